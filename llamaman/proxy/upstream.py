"""Pooled keep-alive HTTP to llama-server, forwarding bytes as they arrive."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade",
})
log = logging.getLogger(__name__)
READ_SIZE = 64 * 1024


class UpstreamError(Exception):
    """llama-server could not be reached or broke the connection."""

    def __init__(self, message: str, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class UpstreamPool:
    """One keep-alive connection pool per llama-server address."""

    def __init__(self, connect_timeout: float, read_timeout: float, maxsize: int = 64) -> None:
        self.manager = urllib3.PoolManager(
            num_pools=64, maxsize=maxsize, block=False, retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        )

    def open(self, method: str, host: str, port: int, path: str, headers: dict[str, str],
             body: bytes | None) -> urllib3.BaseHTTPResponse:
        """Send a request and return the response with its body unread.

        A connection that breaks before any response byte is almost always a kept-alive one
        that llama-server closed as we reused it: the request is sent again, once, on a new one.
        """
        url = f"http://{host}:{port}{path}"
        try:
            try:
                return self._send(method, url, headers, body)
            except urllib3.exceptions.ProtocolError as err:
                log.info("upstream connection broke before the response (%r); retrying once", err)
                return self._send(method, url, headers, body)
        except urllib3.exceptions.NewConnectionError as err:  # a TimeoutError subclass in urllib3
            raise UpstreamError(f"llama-server is unreachable: {err}") from err
        except urllib3.exceptions.TimeoutError as err:
            raise UpstreamError(f"llama-server did not answer in time: {err}", timeout=True) from err
        except Urllib3Error as err:
            log.warning("upstream request failed: %r", err)
            raise UpstreamError(f"llama-server is unreachable: {err}") from err

    def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None):
        return self.manager.request(method, url, body=body, headers=headers,
                                    preload_content=False, redirect=False)

    def close(self) -> None:
        self.manager.clear()


def body_chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """Yield the body as it arrives: each HTTP chunk of a chunked (SSE) response on its own."""
    if response.chunked and response.supports_chunked_reads():
        yield from response.read_chunked(decode_content=False)
        return
    while True:
        data = response.read1(READ_SIZE, decode_content=False)
        if not data:
            return
        yield data


def forward_headers(headers: dict[str, str] | urllib3.HTTPHeaderDict, *, drop: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Headers safe to pass along: hop-by-hop ones and those in drop removed."""
    return [(k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP and k.lower() not in drop]
