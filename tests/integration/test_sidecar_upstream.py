"""The sidecar's upstream HTTP/1.1 client against a scripted raw-socket server on 127.0.0.1:
body framings, keep-alive reuse, the stale-connection retry and error mapping."""
import socket
import threading

import pytest

from llamaman.proxy.upstream import (
    BrokenUpstream,
    UpstreamFailed,
    UpstreamPool,
    body_chunks,
)


class Scripted:
    """Answers each request with the next scripted reply; None closes without answering."""

    def __init__(self, replies: list[bytes | None], close_after: bool = False) -> None:
        self.replies = list(replies)
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        buffered = b""
        while self.replies:
            while b"\r\n\r\n" not in buffered:
                data = conn.recv(65536)
                if not data:
                    return
                buffered += data
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(buffered) < length:
                buffered += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + buffered[:length])
            buffered = buffered[length:]
            reply = self.replies.pop(0)
            if reply is None:
                return
            conn.sendall(reply)
            if self.close_after:
                return


def sized(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        extra, len(body), body)


def chunked(*pieces: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\nX-Trailer: 1\r\n\r\n"


def fetch(pool: UpstreamPool, server: Scripted, body: bytes | None = None, method: str = "GET"):
    response = pool.open(method, "127.0.0.1", server.port, "/v1/x?y=1", {"Authorization": "Bearer k"}, body)
    return response, list(body_chunks(response))


def test_sized_responses_reuse_one_connection_and_send_one_request_head():
    server = Scripted([sized(b'{"a": 1}'), sized(b"ok", b"Server: llama.cpp\r\n")])
    pool = UpstreamPool(1, 5)
    first, parts = fetch(pool, server, b'{"q": 1}', "POST")
    assert first.status == 200 and b"".join(parts) == b'{"a": 1}'
    assert first.headers.get("content-type") == "application/json"
    first.release_conn()
    second, parts = fetch(pool, server)
    assert parts == [b"ok"] and second.headers["SERVER"] == "llama.cpp"
    second.release_conn()
    assert server.connections == 1
    request = server.requests[0]
    assert request.startswith(b"POST /v1/x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAuthorization: Bearer k\r\n" in request and request.endswith(b"\r\n\r\n" + b'{"q": 1}')
    assert b"Content-Length: 8\r\n" in request and b"Content-Length" not in server.requests[1]


def test_chunked_bodies_arrive_chunk_by_chunk_and_trailers_are_skipped():
    server = Scripted([chunked(b"data: 1\n\n", b"data: 2\n\n"), sized(b"after")])
    pool = UpstreamPool(1, 5)
    response, parts = fetch(pool, server)
    assert response.chunked and parts == [b"data: 1\n\n", b"data: 2\n\n"]
    response.release_conn()
    assert fetch(pool, server)[1] == [b"after"] and server.connections == 1


def test_close_delimited_and_connection_close_responses_are_not_reused():
    server = Scripted([b"HTTP/1.1 200 OK\r\n\r\nuntil the end", sized(b"x", b"Connection: close\r\n"), sized(b"y")],
                      close_after=True)
    pool = UpstreamPool(1, 5)
    for expected in (b"until the end", b"x", b"y"):
        response, parts = fetch(pool, server)
        assert b"".join(parts) == expected
        response.release_conn()
    assert server.connections == 3


def test_no_body_for_head_and_204():
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n",
                       sized(b"z")])
    pool = UpstreamPool(1, 5)
    head, parts = fetch(pool, server, method="HEAD")
    assert head.status == 200 and parts == []
    head.release_conn()
    empty, parts = fetch(pool, server)
    assert empty.status == 204 and parts == []
    empty.release_conn()
    assert fetch(pool, server)[1] == [b"z"] and server.connections == 1


def test_a_stale_kept_alive_connection_is_retried_once_on_a_new_one():
    server = Scripted([sized(b"one"), None, sized(b"two")])
    pool = UpstreamPool(1, 5)
    response, _ = fetch(pool, server)
    response.release_conn()
    response, parts = fetch(pool, server, b"{}", "POST")
    assert parts == [b"two"] and server.connections == 2


def test_a_fresh_connection_closed_without_an_answer_is_a_502():
    server = Scripted([None])
    with pytest.raises(UpstreamFailed) as raised:
        fetch(UpstreamPool(1, 5), server)
    assert not raised.value.timeout


def test_garbage_is_a_502_and_a_body_cut_short_breaks_the_stream():
    with pytest.raises(UpstreamFailed, match="not an HTTP response"):
        fetch(UpstreamPool(1, 5), Scripted([b"SSH-2.0-nope\r\n\r\n"]))
    server = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], close_after=True)
    response = UpstreamPool(1, 5).open("GET", "127.0.0.1", server.port, "/", {}, None)
    with pytest.raises(BrokenUpstream):
        list(body_chunks(response))
    response.close()


def test_closing_an_unfinished_response_closes_the_connection():
    server = Scripted([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", sized(b"next")])
    pool = UpstreamPool(1, 5)
    response = pool.open("GET", "127.0.0.1", server.port, "/", {}, None)
    assert next(body_chunks(response)) == b"hello"
    response.close()
    response.release_conn()  # after close(): nothing is handed back
    assert fetch(pool, server)[1] == [b"next"] and server.connections == 2
