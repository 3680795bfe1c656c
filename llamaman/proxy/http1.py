"""A lean HTTP/1.1 client connection to llama-server: the hot path of every proxied request.

One send per request (head and body together, TCP_NODELAY), responses read through a C
buffered reader; Content-Length, chunked and close-delimited bodies. It replaces urllib3 on
this path because urllib3's per-request URL parsing, pool-key building and email-based
header parsing cost more CPU than everything else the proxy does.
"""
from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterator

MAX_LINE = 65536
MAX_HEADERS = 200
READ_SIZE = 64 * 1024
_NO_BODY_STATUS = frozenset({204, 304})


class BrokenUpstream(ConnectionError):
    """The connection broke, or llama-server sent something that is not HTTP/1.x."""


class StaleConnection(BrokenUpstream):
    """A kept-alive connection was closed by llama-server before any response byte arrived."""


class Headers:
    """Response headers in arrival order, looked up case-insensitively."""

    __slots__ = ("_index", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._index = {name.lower(): value for name, value in pairs}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._index.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)


class Connection:
    """One keep-alive TCP connection to a llama-server."""

    __slots__ = ("address", "reused", "rfile", "sock")

    def __init__(self, address: tuple[str, int], connect_timeout: float, read_timeout: float) -> None:
        self.address = address
        self.sock = socket.create_connection(address, timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(read_timeout)
        self.rfile = self.sock.makefile("rb", buffering=READ_SIZE)
        self.reused = False

    def alive(self) -> bool:
        """False when llama-server closed the idle connection (or sent something unasked)."""
        try:
            return not readable(self.sock, 0)
        except (OSError, ValueError):
            return False

    def send(self, head: bytes, body: bytes | None) -> None:
        self.sock.sendall(head + body if body and len(body) < READ_SIZE else head)
        if body and len(body) >= READ_SIZE:
            self.sock.sendall(body)

    def read_head(self) -> tuple[int, str, Headers, bool]:
        """Status, reason, headers, and whether the server keeps the connection open."""
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                raise StaleConnection("llama-server closed the connection before answering")
            version, _, rest = line.partition(b" ")
            code, _, reason = rest.partition(b" ")
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise BrokenUpstream(f"not an HTTP response: {line[:80]!r}")
            status = int(code)
            headers = self._read_headers()
            if not 100 <= status < 200 or status == 101:
                break
        connection = (headers.get("connection") or "").lower()
        keep = "close" not in connection and (version == b"HTTP/1.1" or "keep-alive" in connection)
        return status, reason.strip().decode("latin-1"), headers, keep

    def _read_headers(self) -> Headers:
        pairs = []
        readline = self.rfile.readline
        for _ in range(MAX_HEADERS):
            line = readline(MAX_LINE)
            if line in (b"\r\n", b"\n"):
                return Headers(pairs)
            if not line:
                raise BrokenUpstream("the connection closed inside the response headers")
            name, sep, value = line.partition(b":")
            if sep:
                pairs.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
        raise BrokenUpstream("too many response headers")

    def close(self) -> None:
        """Close at once (an unfinished response: llama-server sees the disconnect)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.rfile.close()
        self.sock.close()


class Response:
    """A response with its body unread; release_conn() (or close()) must follow."""

    def __init__(self, conn: Connection, method: str, head: tuple[int, str, Headers, bool],
                 give_back: Callable[[Connection], None]) -> None:
        self.status, self.reason, self.headers, keep = head
        self._conn: Connection | None = conn
        self._give_back = give_back
        encoding = (self.headers.get("transfer-encoding") or "").lower()
        length = self.headers.get("content-length")
        self.chunked = "chunked" in encoding
        self._remaining: int | None = None  # bytes left of a Content-Length body
        if method == "HEAD" or self.status in _NO_BODY_STATUS:
            self._remaining = 0
        elif not self.chunked and length is not None:
            self._remaining = _content_length(length)
        self._reusable = keep and (self.chunked or self._remaining is not None)
        self.complete = self._remaining == 0

    def stream(self) -> Iterator[bytes]:
        """The body as it arrives: each HTTP chunk of a chunked (SSE) response on its own."""
        if self.complete or self._conn is None:
            return
        if self.chunked:
            yield from self._chunks(self._conn.rfile)
        elif self._remaining is not None:
            yield from self._sized(self._conn.rfile)
        else:
            while data := self._conn.rfile.read1(READ_SIZE):
                yield data
            self.complete = True

    def read(self) -> bytes:
        """The rest of the body."""
        if self._remaining and not self.chunked and self._conn is not None:
            data = self._conn.rfile.read(self._remaining)
            if len(data) < self._remaining:
                raise BrokenUpstream("llama-server closed the connection mid-body")
            self._remaining, self.complete = 0, True
            return data
        return b"".join(self.stream())

    def drain_conn(self) -> None:
        """Read what is left (e.g. after [DONE]) so the connection can be reused."""
        try:
            for _ in self.stream():
                pass
        except OSError:
            self.close()

    def release_conn(self) -> None:
        """Hand the connection back when the body was read to its end; close it otherwise."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self.complete and self._reusable:
            conn.reused = True
            self._give_back(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close the connection now (llama-server stops generating for a client that left)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _sized(self, rfile) -> Iterator[bytes]:
        while self._remaining:
            data = rfile.read1(min(self._remaining, READ_SIZE))
            if not data:
                raise BrokenUpstream("llama-server closed the connection mid-body")
            self._remaining -= len(data)
            yield data
        self.complete = True

    def _chunks(self, rfile) -> Iterator[bytes]:
        while True:
            line = rfile.readline(MAX_LINE)
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise BrokenUpstream("the stream ended inside a chunked body") from None
            if size == 0:
                self._skip_trailers(rfile)
                self.complete = True
                return
            data = rfile.read(size)
            if len(data) < size:
                raise BrokenUpstream("llama-server closed the connection mid-chunk")
            yield data  # before its CRLF: the next event may be what completes the packet
            if rfile.read(2) != b"\r\n":
                raise BrokenUpstream("malformed chunked body")

    def _skip_trailers(self, rfile) -> None:
        for _ in range(MAX_HEADERS):
            line = rfile.readline(MAX_LINE)
            if line in (b"\r\n", b"\n"):
                return
            if not line:
                self._reusable = False
                return
        raise BrokenUpstream("too many trailer lines")


def readable(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the socket has data, EOF or an error within timeout_s (poll: no fd-number limit)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


def _content_length(value: str) -> int:
    try:
        length = int(value.split(",")[0])
    except ValueError:
        raise BrokenUpstream(f"bad Content-Length {value!r}") from None
    if length < 0:
        raise BrokenUpstream(f"bad Content-Length {value!r}")
    return length


def request_head(method: str, target: str, host: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """The request line and headers, with Host and (when there is a body) Content-Length."""
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")
