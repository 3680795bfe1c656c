"""The sidecar: the WSGI app on an instance's public port.

Per request: auth guard → body limit → model check → FIFO gate → wake if asleep →
sampling overrides → llama-server with the internal key, bytes relayed as they arrive.
"""
from __future__ import annotations

import json
import logging
import select
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from urllib3.exceptions import HTTPError as Urllib3Error

from llamaman.auth.guard import Access, decide
from llamaman.auth.keys import ApiKeyService, header_credential
from llamaman.errors import LlamamanError, NotFound, TooLarge, Unavailable
from llamaman.http import MAX_BODY_BYTES
from llamaman.proxy import inference
from llamaman.proxy.gate import Gates, Ticket
from llamaman.proxy.upstream import (
    UpstreamError,
    UpstreamPool,
    body_chunks,
    forward_headers,
)

if TYPE_CHECKING:
    from llamaman.instances.service import InstanceService

log = logging.getLogger(__name__)

SOCKET_KEY = "llamaman.socket"
_DROP_REQUEST = frozenset({"authorization", "host", "content-length"})
_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                404: "Not Found", 413: "Payload Too Large", 429: "Too Many Requests",
                499: "Client Closed Request", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Timeout"}
_DOWN = frozenset({"stopped", "failed"})
SLEEPING = "sleeping"


@dataclass(frozen=True)
class Target:
    """Where an instance's llama-server listens now, and the key it expects."""

    host: str
    port: int
    api_key: str


class InstanceProxy:
    """Serves one public port for one instance (or its shared-queue pool)."""

    def __init__(self, instance_id: str, instances: InstanceService, gates: Gates, pool: UpstreamPool,
                 keys: ApiKeyService, require_auth: Callable[[], bool], timeout: float) -> None:
        self.instance_id = instance_id
        self.instances = instances
        self.gates = gates
        self.pool = pool
        self.keys = keys
        self.require_auth = require_auth
        self.timeout = timeout

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        ticket = None
        try:
            decide(Access.MODEL, header_credential(self.keys, environ.get("HTTP_AUTHORIZATION")),
                   self.require_auth())
            path = environ.get("PATH_INFO") or "/"
            raw = read_body(environ)
            live = self._live(self.instance_id)
            body = None
            if path in inference.INFERENCE_PATHS:
                body = inference.parse(raw)
                inference.check_model(body, live["model_name"])  # before queueing or waking
                ticket = self.gates.admit(self.instance_id, self.timeout, client_gone(environ))
            elif live["status"] == SLEEPING and path in inference.PROBE_PATHS:
                raise Unavailable("instance is sleeping", status=SLEEPING)
            member = ticket.member_id if ticket else self.instance_id
            target = self.instances.ensure_running(member, self.timeout)
            if body is not None:
                raw = inference.apply_overrides(raw, body, self._live(member))
            response = self.pool.open(environ["REQUEST_METHOD"], target.host, target.port,
                                      request_target(environ), upstream_headers(environ, target), raw)
        except LlamamanError as err:
            self._done(ticket)
            return json_error(start_response, err.status, err.message)
        except UpstreamError as err:
            self._done(ticket)
            return json_error(start_response, 504 if err.timeout else 502, str(err))
        drop = frozenset({"content-length"}) if response.chunked else frozenset()
        headers = forward_headers(response.headers, drop=drop)
        if ticket is not None:
            headers += [("X-Llamaman-Instance", ticket.member_id), ("X-Llamaman-Admission", str(ticket.seq))]
        write = start_response(f"{response.status} {response.reason or ''}".strip(), headers)
        if response.chunked:
            write(b"")  # send the headers now: a WSGI server would hold them until the first chunk
        return Relay(response, lambda: self._done(ticket))

    def _live(self, instance_id: str) -> dict:
        live = self.instances.live(instance_id)
        if live is None:
            raise NotFound("instance no longer exists")
        if live["status"] in _DOWN:
            raise Unavailable(live.get("error") or f"instance is {live['status']}")
        return live

    def _done(self, ticket: Ticket | None) -> None:
        if ticket is not None:
            ticket.release()
            self.instances.request_done(ticket.member_id)


def client_gone(environ: dict) -> Callable[[], bool]:
    """A check that the client closed its connection (used while a request waits in the queue)."""
    sock = environ.get(SOCKET_KEY)
    if sock is None:
        return lambda: False

    def gone() -> bool:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True
    return gone


class Relay:
    """The response body: upstream bytes as they arrive.

    The WSGI server calls close() when the response ends or the client goes away; an
    unfinished upstream response is then closed at once, so llama-server stops generating.
    """

    def __init__(self, response, done: Callable[[], None]) -> None:
        self.response = response
        self.done = done
        self.finished = False
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from body_chunks(self.response)
            self.finished = True
        except (Urllib3Error, OSError) as err:  # llama-server died mid-body: end the stream cleanly
            log.warning("upstream stream broke: %s", err)
            if self.response.headers.get("Content-Type", "").startswith("text/event-stream"):
                yield b'data: {"error": "llama-server stopped while streaming"}\n\n'

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.finished:
            self.response.close()
        self.response.release_conn()
        self.done()


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
