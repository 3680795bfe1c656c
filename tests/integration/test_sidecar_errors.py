"""The sidecar's error mapping, with a fake instance service (our own interface)."""
import io
import json
import socket
import threading

from llamaman.auth.guard import ANONYMOUS
from llamaman.proxy.admission import Pipeline
from llamaman.proxy.contract import Target
from llamaman.proxy.gate import Gates
from llamaman.proxy.sidecar import InstanceProxy
from llamaman.proxy.upstream import UpstreamPool
from tests.helpers import free_port


class FakeInstances:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.done = []

    def live(self, instance_id):
        return {"status": "healthy", "model_name": "gemma", "error": None,
                "proxy_sampling_override_enabled": False}

    def ensure_running(self, instance_id, timeout):
        return self.target

    def request_done(self, instance_id):
        self.done.append(instance_id)


class OpenKeys:
    def credential(self, header, api_key=None):
        return None if header is None and api_key is None else ANONYMOUS


def call(proxy, path="/v1/chat/completions", body=b'{"messages": []}'):
    captured = {}

    def start_response(status, headers):
        captured["status"] = int(status.split()[0])
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(body)}
    payload = b"".join(proxy(environ, start_response))
    return captured["status"], json.loads(payload)


def make_proxy(target, read_timeout=5.0):
    gates = Gates()
    gates.configure("i", None, 1, 5)
    instances = FakeInstances(target)
    pipeline = Pipeline(instances, gates, UpstreamPool(1.0, read_timeout), timeout=2.0)
    proxy = InstanceProxy("i", instances, pipeline, OpenKeys(), require_auth=lambda: False)
    return proxy, instances, gates


def test_unreachable_upstream_is_502_and_frees_the_gate():
    proxy, instances, gates = make_proxy(Target("127.0.0.1", free_port(), "k"))
    status, body = call(proxy)
    assert status == 502 and "unreachable" in body["error"]["message"]
    assert gates.counts("i") == (0, 0) and instances.done == ["i"]


def test_silent_upstream_is_504():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    proxy, _, gates = make_proxy(Target("127.0.0.1", listener.getsockname()[1], "k"), read_timeout=0.3)
    status, body = call(proxy)
    assert status == 504 and "in time" in body["error"]["message"]
    assert gates.counts("i") == (0, 0)
    listener.close()


def test_wrong_model_is_404_before_the_gate():
    proxy, instances, gates = make_proxy(Target("127.0.0.1", free_port(), "k"))
    status, body = call(proxy, body=b'{"model": "llama3"}')
    assert status == 404 and body == {"error": {"message": "model 'llama3' is not loaded on this port",
                                                "type": "not_found_error", "param": None, "code": 404}}
    status, body = call(proxy, path="/completion", body=b'{"model": "llama3"}')  # llama.cpp's own route
    assert status == 404 and body == {"error": "model 'llama3' is not loaded on this port"}
    assert instances.done == [] and gates.counts("i") == (0, 0)


def test_body_over_the_limit_is_413():
    proxy, _, _ = make_proxy(Target("127.0.0.1", free_port(), "k"))
    captured = {}
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/completion", "CONTENT_LENGTH": str(17 * 2**20),
               "wsgi.input": io.BytesIO(b"")}
    list(proxy(environ, lambda status, headers: captured.update(status=status)))
    assert captured["status"].startswith("413")
