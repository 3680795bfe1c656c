"""Relaying llama-server's SSE: a stream that ends early (cleanly or by a dropped connection)
ends with an error event, a complete one passes through. A raw socket server plays llama-server;
the instance service is a fake of our own interface."""
import json
import socket
import threading

import pytest

from llamaman.compat.streams import DONE, StreamCut, relay_sse, sse_events
from llamaman.proxy.admission import Pipeline
from llamaman.proxy.contract import Target
from llamaman.proxy.forward import Forwarder
from llamaman.proxy.gate import Gates
from llamaman.proxy.upstream import UpstreamPool
from tests.integration.test_sidecar_errors import FakeInstances

EVENT = b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def serve_once(reply: bytes) -> int:
    """A one-request server that sends `reply` and closes the connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)
        listener.close()
    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1]


def open_stream(reply: bytes):
    port = serve_once(reply)
    instances = FakeInstances(Target("127.0.0.1", port, "key"))
    gates = Gates()
    gates.configure("i1", None, 0, 10)
    forwarder = Forwarder(Pipeline(instances, gates, UpstreamPool(2, 10), timeout=5))
    return forwarder.open("i1", "/v1/chat/completions", {"stream": True}), instances


def relayed(reply: bytes) -> tuple[list[bytes], list]:
    opened, instances = open_stream(reply)
    ends = []
    out = list(relay_sse(opened, lambda event: {**event, "model": "m"}, ends.append))
    assert instances.done == ["i1"], "the gate slot is released"
    return out, ends


def test_a_complete_stream_passes_through_rewritten():
    out, ends = relayed(HEAD + chunk(EVENT) + chunk(b": ping\n\n") + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    assert [json.loads(line[6:]) for line in out[:-1]] == [{"choices": [{"delta": {"content": "hi"}}], "model": "m"}]
    assert out[-1] == b"data: [DONE]\n\n" and ends == [None]


def test_a_client_that_leaves_closes_the_relay_as_499():
    opened, instances = open_stream(HEAD + chunk(EVENT) + chunk(EVENT))
    ends = []
    relay = relay_sse(opened, lambda event: event, ends.append)
    assert next(relay).startswith(b"data: ")
    relay.close()  # what the WSGI server does when the client went away
    assert ends == [(499, "client disconnected")] and instances.done == ["i1"]


@pytest.mark.parametrize("ending", [b"0\r\n\r\n", b"", b"5\r\nda"], ids=["clean end", "dropped", "mid-chunk"])
def test_a_stream_cut_short_ends_with_an_error_event(ending):
    out, ends = relayed(HEAD + chunk(EVENT) + ending)
    assert json.loads(out[0][6:])["choices"][0]["delta"]["content"] == "hi"
    error = json.loads(out[-1][6:])["error"]
    assert "llama-server stopped while streaming" in error["message"] and ends == [(502, error["message"])]


def test_llama_servers_own_completion_stream_ends_with_its_stop_event():
    final = b'data: {"content": "", "stop": true}\n\n'
    out, ends = relayed(HEAD + chunk(b'data: {"content": "hi", "stop": false}\n\n') + chunk(final) + b"0\r\n\r\n")
    assert [json.loads(line[6:])["stop"] for line in out] == [False, True] and ends == [None]


def test_events_split_across_chunks_are_joined():
    opened, _ = open_stream(HEAD + chunk(EVENT[:9]) + chunk(EVENT[9:] + b"data: [DONE]\n\n") + b"0\r\n\r\n")
    assert list(sse_events(opened)) == [{"choices": [{"delta": {"content": "hi"}}]}, DONE]
    opened.close()


def test_sse_events_raise_stream_cut_without_done():
    opened, _ = open_stream(HEAD + chunk(EVENT) + b"0\r\n\r\n")
    events = sse_events(opened)
    assert next(events)["choices"]
    with pytest.raises(StreamCut):
        next(events)
    opened.close(finished=False)
