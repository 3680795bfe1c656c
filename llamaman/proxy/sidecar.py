"""The WSGI app on an instance's public port: the auth guard, then llama-server with the
internal key. (The sidecar issue adds the gate, sleep/wake, overrides and model check here.)"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from urllib3.exceptions import HTTPError as Urllib3Error

from llamaman.auth.guard import Access, decide
from llamaman.auth.keys import ApiKeyService, header_credential
from llamaman.errors import LlamamanError, TooLarge
from llamaman.http import MAX_BODY_BYTES
from llamaman.proxy.upstream import (
    UpstreamError,
    UpstreamPool,
    body_chunks,
    forward_headers,
)

log = logging.getLogger(__name__)

_DROP_REQUEST = frozenset({"authorization", "host", "content-length"})
_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                404: "Not Found", 413: "Payload Too Large", 502: "Bad Gateway",
                503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass(frozen=True)
class Target:
    """Where an instance's llama-server listens now, and the key it expects."""

    host: str
    port: int
    api_key: str


Resolver = Callable[[], Target]  # raises a LlamamanError (e.g. Unavailable) when not serving


class InstanceProxy:
    """Forwards every request on one public port to the instance's llama-server."""

    def __init__(self, resolve: Resolver, pool: UpstreamPool, keys: ApiKeyService,
                 require_auth: Callable[[], bool]) -> None:
        self.resolve = resolve
        self.pool = pool
        self.keys = keys
        self.require_auth = require_auth

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        try:
            decide(Access.MODEL, header_credential(self.keys, environ.get("HTTP_AUTHORIZATION")),
                   self.require_auth())
            target = self.resolve()
            body = read_body(environ)
            response = self.pool.open(environ["REQUEST_METHOD"], target.host, target.port,
                                      request_target(environ), upstream_headers(environ, target), body)
        except LlamamanError as err:
            return json_error(start_response, err.status, err.message)
        except UpstreamError as err:
            return json_error(start_response, 504 if err.timeout else 502, str(err))
        drop = frozenset() if not response.chunked else frozenset({"content-length"})
        start_response(f"{response.status} {response.reason or ''}".strip(),
                       forward_headers(response.headers, drop=drop))
        return relay(response)


def relay(response) -> Iterator[bytes]:
    """Yield upstream bytes as they arrive; close upstream at once if the client goes away."""
    finished = False
    try:
        yield from body_chunks(response)
        finished = True
    except (Urllib3Error, OSError) as err:  # upstream died mid-body: end the stream cleanly
        log.warning("upstream stream broke: %s", err)
        if response.headers.get("Content-Type", "").startswith("text/event-stream"):
            yield b'data: {"error": "llama-server stopped while streaming"}\n\n'
    finally:
        if not finished:
            response.close()  # aborts generation upstream instead of draining it
        response.release_conn()


def read_body(environ: dict) -> bytes | None:
    """The request body (Content-Length or chunked), at most MAX_BODY_BYTES."""
    length = environ.get("CONTENT_LENGTH")
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if length and int(length) > MAX_BODY_BYTES:
        raise TooLarge(f"request body too large (limit {MAX_BODY_BYTES // 2**20} MiB)")
    if not length and not chunked:
        return None
    data = environ["wsgi.input"].read(int(length) if length else MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise TooLarge(f"request body too large (limit {MAX_BODY_BYTES // 2**20} MiB)")
    return data


def request_target(environ: dict) -> str:
    query = environ.get("QUERY_STRING")
    path = environ.get("PATH_INFO") or "/"
    return f"{path}?{query}" if query else path


def upstream_headers(environ: dict, target: Target) -> dict[str, str]:
    """Client headers minus hop-by-hop and credentials, plus the internal key."""
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").title()] = value
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    headers = dict(forward_headers(headers, drop=_DROP_REQUEST))
    headers["Authorization"] = f"Bearer {target.api_key}"
    return headers


def json_error(start_response: Callable, status: int, message: str) -> list[bytes]:
    payload = json.dumps({"error": message}).encode()
    start_response(f"{status} {_STATUS_TEXT.get(status, 'Error')}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]
