"""cheroot's per-connection classes, made lean for the instance ports.

cheroot reads and writes through pure-Python buffered files and hands every kept-alive
connection back to its selector thread after each request; on a port that mostly relays
small requests those costs dominate. Here a connection reads through the C buffered reader,
writes each response piece with one send (headers and a first body piece together), and
stays on its worker while the client's next request follows within a moment. The worker
pool stays bounded: a connection lingers only while no other connection waits for a worker.
"""
from __future__ import annotations

import io
import socket

from cheroot import server, wsgi

from llamaman.proxy.contract import SOCKET_KEY
from llamaman.proxy.http1 import readable

LINGER_S = 0.002  # how long a worker waits for a kept-alive client's next request


class SocketReader(io.BufferedReader):
    """The connection's rfile on the C buffered reader; has_data() never blocks."""

    bytes_read = 0  # cheroot's statistics (off) read this

    def __init__(self, sock: socket.socket, bufsize: int) -> None:
        super().__init__(socket.SocketIO(sock, "rb"), bufsize)
        self._sock = sock

    def has_data(self) -> bool:
        """Whether a request is already waiting: buffered, or readable on the socket now."""
        timeout = self._sock.gettimeout()
        try:
            self._sock.settimeout(0.0)
            return bool(self.peek(1))
        except OSError:
            return False
        finally:
            self._sock.settimeout(timeout)


class SocketWriter:
    """The connection's wfile: every write is one sendall; hold() joins the next two."""

    bytes_written = 0  # cheroot's statistics (off) read this

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._holding = False
        self._held: bytes | None = None

    def hold(self) -> None:
        """Keep the next write (the response headers) to send it with the one after."""
        self._holding = True

    def write(self, data: bytes) -> int:
        if self._holding:
            self._holding, self._held = False, bytes(data)
            return len(data)
        if self._held is not None:
            data, self._held = self._held + data, None
        self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._sock.sendall(data)

    def close(self) -> None:
        self._held = None


class LingeringConnection(server.HTTPConnection):
    """Serves a kept-alive client's next request on the same worker when it follows quickly."""

    def __init__(self, server_: server.HTTPServer, sock: socket.socket, makefile=None) -> None:
        super().__init__(server_, sock, makefile=lambda s, mode, size: _files(s, mode, size))

    def communicate(self) -> bool:
        keep = super().communicate()
        while keep and self._next_request_soon():
            keep = super().communicate()
        return keep

    def _next_request_soon(self) -> bool:
        # A request already buffered (pipelining) is found by cheroot's put() instead.
        if self.server.requests.qsize:  # another connection waits for a worker: give this one up
            return False
        try:
            return readable(self.socket, LINGER_S)
        except (OSError, ValueError):
            return False


def _files(sock: socket.socket, mode: str, size: int):
    return SocketReader(sock, size) if "r" in mode else SocketWriter(sock)


class SocketGateway(wsgi.Gateway_10):
    """Puts the client socket in the environ (a queued request notices a disconnect) and sends
    the response headers with the first piece of the body."""

    def get_environ(self) -> dict:
        environ = super().get_environ()
        environ[SOCKET_KEY] = self.req.conn.socket
        return environ

    def write(self, chunk: bytes) -> None:
        rbo = self.remaining_bytes_out
        if chunk and not self.req.sent_headers and (rbo is None or len(chunk) <= rbo):
            self.req.conn.wfile.hold()
        super().write(chunk)
