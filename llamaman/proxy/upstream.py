"""Pooled keep-alive HTTP to llama-server, forwarding bytes as they arrive."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping

from llamaman.errors import UpstreamFailed
from llamaman.proxy.http1 import (
    BrokenUpstream,
    Connection,
    Headers,
    Response,
    StaleConnection,
    request_head,
)

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade",
})
log = logging.getLogger(__name__)

__all__ = ["HOP_BY_HOP", "BrokenUpstream", "Response", "UpstreamFailed", "UpstreamPool",
           "body_chunks", "forward_headers"]


class UpstreamPool:
    """Idle keep-alive connections per llama-server address (at most maxsize kept each)."""

    def __init__(self, connect_timeout: float, read_timeout: float, maxsize: int = 64) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.maxsize = maxsize
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._lock = threading.Lock()

    def open(self, method: str, host: str, port: int, path: str, headers: Mapping[str, str],
             body: bytes | None) -> Response:
        """Send a request and return the response with its body unread.

        A kept-alive connection that llama-server closed as we reused it fails before any
        response byte: the request is sent again, once, on a new connection (llama-server
        never saw it).
        """
        address = (host, port)
        head = request_head(method, path, f"{host}:{port}", headers, body)
        conn = self._take(address)
        if conn is not None:
            try:
                return self._exchange(conn, method, head, body)
            except (StaleConnection, ConnectionResetError, BrokenPipeError) as err:
                conn.close()
                log.info("kept-alive upstream connection was closed (%r); retrying once", err)
            except BaseException:
                conn.close()
                raise
        try:
            conn = Connection(address, self.connect_timeout, self.read_timeout)
        except TimeoutError as err:
            raise UpstreamFailed(f"llama-server did not accept the connection in time: {err}", timeout=True) from err
        except OSError as err:
            raise UpstreamFailed(f"llama-server is unreachable: {err}") from err
        try:
            return self._exchange(conn, method, head, body)
        except BaseException:
            conn.close()
            raise

    def _exchange(self, conn: Connection, method: str, head: bytes, body: bytes | None) -> Response:
        try:
            conn.send(head, body)
            return Response(conn, method, conn.read_head(), self._give_back)
        except (StaleConnection, ConnectionResetError, BrokenPipeError):
            if conn.reused:
                raise
            raise UpstreamFailed("llama-server closed the connection without answering") from None
        except TimeoutError as err:
            raise UpstreamFailed(f"llama-server did not answer in time: {err}", timeout=True) from err
        except OSError as err:  # BrokenUpstream included
            log.warning("upstream request failed: %r", err)
            raise UpstreamFailed(f"llama-server is unreachable: {err}") from err

    def _take(self, address: tuple[str, int]) -> Connection | None:
        """The most recently used idle connection that is still open."""
        while True:
            with self._lock:
                idle = self._idle.get(address)
                conn = idle.pop() if idle else None
            if conn is None or conn.alive():
                return conn
            conn.close()

    def _give_back(self, conn: Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(conn.address, [])
            if len(idle) < self.maxsize:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()


def body_chunks(response: Response) -> Iterator[bytes]:
    """Yield the body as it arrives: each HTTP chunk of a chunked (SSE) response on its own."""
    return response.stream()


def forward_headers(headers: Mapping[str, str] | Headers | Iterable, *,
                    drop: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Headers safe to pass along: hop-by-hop ones and those in drop removed."""
    return [(k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP and k.lower() not in drop]
