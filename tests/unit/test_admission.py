"""The request pipeline releases a request's gate slot exactly once on every path: fakes of our
own interfaces (instances, upstream pool and response) stand in for llama-server."""
import io

import pytest

from llamaman.auth.guard import ANONYMOUS
from llamaman.errors import Unavailable, UpstreamFailed
from llamaman.proxy.admission import Pipeline
from llamaman.proxy.contract import Target
from llamaman.proxy.forward import Forwarder
from llamaman.proxy.gate import Gates
from llamaman.proxy.sidecar import InstanceProxy


class FakeInstances:
    def __init__(self, wake_error=None):
        self.wake_error = wake_error
        self.done = []

    def live(self, instance_id):
        return {"status": "healthy", "model_name": "m", "error": None,
                "proxy_sampling_override_enabled": False}

    def ensure_running(self, instance_id, timeout):
        if self.wake_error is not None:
            raise self.wake_error
        return Target("127.0.0.1", 1, "key")

    def request_done(self, instance_id):
        self.done.append(instance_id)


class FakeResponse:
    status, reason, chunked = 200, "OK", False

    def __init__(self, fail_on_close=False):
        self.headers = {"content-type": "application/json", "content-length": "2"}
        self.fail_on_close = fail_on_close
        self.events = []

    def stream(self):
        yield b"{}"

    def close(self):
        self.events.append("close")
        if self.fail_on_close:
            raise OSError("socket already gone")

    def release_conn(self):
        self.events.append("release_conn")

    def drain_conn(self):
        self.events.append("drain_conn")


class FakePool:
    def __init__(self, response=None, error=None):
        self.response = response or FakeResponse()
        self.error = error
        self.sent = []

    def open(self, method, host, port, path, headers, body):
        self.sent.append(headers)
        if self.error is not None:
            raise self.error
        return self.response


class OpenKeys:
    def credential(self, header, api_key=None):
        return ANONYMOUS


def setup(instances=None, pool=None):
    instances = instances or FakeInstances()
    gates = Gates()
    gates.configure("i", None, 1, 5)
    pipeline = Pipeline(instances, gates, pool or FakePool(), timeout=2.0)
    return pipeline, instances, gates


def request(proxy, start_response=lambda status, headers: None):
    body = b'{"messages": []}'
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/chat/completions", "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(body)}
    return proxy(environ, start_response)


def test_release_is_once_however_often_it_is_called():
    pipeline, instances, gates = setup()
    admission = pipeline.admit("i", lambda: False, 0.0)
    assert gates.counts("i") == (1, 0)
    admission.release()
    admission.release()
    assert gates.counts("i") == (0, 0) and instances.done == ["i"]


@pytest.mark.parametrize("failure", ["wake", "upstream"])
def test_a_failed_open_releases_the_admission(failure):
    instances = FakeInstances(Unavailable("asleep for good") if failure == "wake" else None)
    pool = FakePool(error=UpstreamFailed("unreachable") if failure == "upstream" else None)
    pipeline, instances, gates = setup(instances, pool)
    admission = pipeline.admit("i", lambda: False, 0.0)
    with pytest.raises((Unavailable, UpstreamFailed)):
        pipeline.open(admission, "i", None, "POST", "/v1/chat/completions", {}, b"{}", {})
    assert admission.released and gates.counts("i") == (0, 0) and instances.done == ["i"]


def test_the_pipeline_sends_the_internal_key_and_times_the_wait():
    pipeline, _, _ = setup()
    pool = pipeline.pool
    admission = pipeline.admit("i", lambda: False, 0.0)
    pipeline.open(admission, "i", None, "POST", "/v1/chat/completions", {}, b"{}", {})
    assert pool.sent == [{"Authorization": "Bearer key"}]
    assert admission.waited_s > 0 and not admission.released


@pytest.mark.parametrize("consume", [True, False], ids=["finished", "client-gone"])
def test_the_sidecar_relay_releases_once_when_closed(consume):
    pipeline, instances, gates = setup()
    proxy = InstanceProxy("i", instances, pipeline, OpenKeys(), require_auth=lambda: False)
    relay = request(proxy)
    assert gates.counts("i") == (1, 0)
    if consume:
        assert b"".join(relay) == b"{}"
    relay.close()
    relay.close()
    assert gates.counts("i") == (0, 0) and instances.done == ["i"]
    assert pipeline.pool.response.events == (["release_conn"] if consume else ["close"])


def test_a_client_gone_before_the_headers_releases_the_slot():
    pipeline, instances, gates = setup()
    proxy = InstanceProxy("i", instances, pipeline, OpenKeys(), require_auth=lambda: False)

    def broken_start_response(status, headers):
        raise BrokenPipeError("client went away")
    with pytest.raises(BrokenPipeError):
        request(proxy, broken_start_response)
    assert gates.counts("i") == (0, 0) and instances.done == ["i"]
    assert pipeline.pool.response.events == ["close"]


def test_a_failing_upstream_close_still_releases_the_slot():
    pipeline, instances, gates = setup(pool=FakePool(FakeResponse(fail_on_close=True)))
    proxy = InstanceProxy("i", instances, pipeline, OpenKeys(), require_auth=lambda: False)
    relay = request(proxy)
    with pytest.raises(OSError):
        relay.close()
    assert gates.counts("i") == (0, 0) and instances.done == ["i"]


def test_the_forwarder_releases_once_on_close():
    pipeline, instances, gates = setup()
    opened = Forwarder(pipeline).open("i", "/v1/chat/completions", {"messages": []})
    assert gates.counts("i") == (1, 0) and opened.ticket.member_id == "i"
    opened.close()
    opened.close()
    assert gates.counts("i") == (0, 0) and instances.done == ["i"]
    assert pipeline.pool.response.events == ["drain_conn", "release_conn"]


def test_the_forwarder_releases_when_the_open_fails():
    pipeline, instances, gates = setup(pool=FakePool(error=UpstreamFailed("unreachable")))
    with pytest.raises(UpstreamFailed):
        Forwarder(pipeline).open("i", "/v1/chat/completions", {"messages": []})
    assert gates.counts("i") == (0, 0) and instances.done == ["i"]
