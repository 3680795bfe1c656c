"""The instance-port server (cheroot with our connection classes) on 127.0.0.1 with a small
WSGI app: keep-alive for many clients, pipelined requests, streamed bodies, request bodies, and
a worker pool that grows with demand up to its limit."""
import http.client
import socket
import threading
import time

import pytest

from llamaman.proxy.servers import THREADS_AT_START, THREADS_PER_PORT, PortServers
from tests.helpers import free_port


def app(environ, start_response):
    chunked = environ.get("HTTP_TRANSFER_ENCODING") == "chunked"
    body = environ["wsgi.input"].read(1024 if chunked else int(environ.get("CONTENT_LENGTH") or 0))
    if environ["PATH_INFO"] == "/stream":
        write = start_response("200 OK", [("Content-Type", "text/event-stream")])
        write(b"")
        return iter([b"data: 1\n\n", b"data: 2\n\n"])
    payload = environ["PATH_INFO"].encode() + b":" + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))])
    return [payload]


@pytest.fixture
def port():
    servers = PortServers("127.0.0.1")
    port = free_port()
    servers.start(port, app)
    yield port
    servers.stop_all()


def test_many_clients_all_stay_kept_alive(port):
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(40)]
    for round_ in range(3):
        for index, client in enumerate(clients):
            client.request("POST", f"/c{index}", body=str(round_))
            response = client.getresponse()
            assert response.read() == f"/c{index}:{round_}".encode()
            assert response.getheader("Connection") != "close"
    assert all(client.sock is not None for client in clients), "no client was made to reconnect"
    for client in clients:
        client.close()


def test_pipelined_requests_are_all_answered(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"/b:"):
            data = sock.recv(65536)
            assert data, received
            received += data
    assert received.index(b"/a:") < received.index(b"/b:")


def test_streamed_and_chunked_request_bodies(port):
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    client.request("GET", "/stream")
    response = client.getresponse()
    assert response.getheader("Transfer-Encoding") == "chunked" and response.read() == b"data: 1\n\ndata: 2\n\n"
    client.request("POST", "/chunked", body=iter([b"hel", b"lo"]), encode_chunked=True)
    assert client.getresponse().read() == b"/chunked:hello"
    client.close()


class Blocking:
    """A WSGI app whose requests wait for release(); counts how many are inside at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = self.most = 0
        self.released = threading.Event()

    def __call__(self, environ, start_response):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.released.wait(10)
        with self.lock:
            self.inside -= 1
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    def wait_inside(self, count: int) -> bool:
        deadline = time.monotonic() + 5
        while self.inside < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.inside >= count


def port_threads(port: int) -> int:
    """cheroot worker threads serving this port (a worker keeps its server as .server)."""
    return sum(getattr(getattr(thread, "server", None), "bind_addr", (None, None))[1] == port
               for thread in threading.enumerate())


def test_the_worker_pool_starts_small_and_grows_to_its_limit():
    servers, blocking, port = PortServers("127.0.0.1"), Blocking(), free_port()
    servers.start(port, blocking)
    try:
        assert port_threads(port) == THREADS_AT_START
        answers: list[bytes] = []
        def call() -> None:
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            client.request("GET", "/")
            answers.append(client.getresponse().read())
            client.close()
        callers = [threading.Thread(target=call) for _ in range(THREADS_PER_PORT + 4)]
        for caller in callers:
            caller.start()
        assert blocking.wait_inside(THREADS_PER_PORT), f"only {blocking.inside} requests got a worker"
        time.sleep(0.2)  # the 4 beyond the limit must stay queued
        assert blocking.most == THREADS_PER_PORT
        blocking.released.set()
        for caller in callers:
            caller.join(15)
        assert answers == [b"ok"] * (THREADS_PER_PORT + 4)
        assert port_threads(port) == THREADS_PER_PORT
    finally:
        blocking.released.set()
        servers.stop_all()
