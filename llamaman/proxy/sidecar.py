"""The sidecar: the WSGI app on an instance's public port.

Per request: auth guard → body limit → model check → FIFO gate → wake if asleep →
sampling overrides → llama-server with the internal key, bytes relayed as they arrive.
Every request goes through here, so the per-request path avoids needless work: no
per-request closures, one pass over the environ, a cached Date header.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from email.utils import formatdate
from typing import TYPE_CHECKING
from urllib.parse import quote

from llamaman.auth.guard import Access, decide
from llamaman.auth.keys import ApiKeyService, header_credential
from llamaman.errors import LlamamanError, NotFound, TooLarge, Unavailable, error_body
from llamaman.http import MAX_BODY_BYTES
from llamaman.proxy import inference
from llamaman.proxy.contract import PREAUTHORISED, SOCKET_KEY, Instances, Target
from llamaman.proxy.gate import Gates, Ticket
from llamaman.proxy.http1 import readable
from llamaman.proxy.record import ProxyRecording, TurnTap, describe
from llamaman.proxy.upstream import (
    HOP_BY_HOP,
    Response,
    UpstreamError,
    UpstreamPool,
    forward_headers,
)

if TYPE_CHECKING:
    from llamaman.compat.turns import Turn

log = logging.getLogger(__name__)

# Client headers never forwarded (WSGI names): credentials, framing, hop-by-hop ones.
_DROP_ENV = frozenset("HTTP_" + name.upper().replace("-", "_")
                      for name in (*HOP_BY_HOP, "authorization", "host", "content-length", "expect"))
_DROP_CHUNKED = frozenset({"content-length"})
_UNSAFE_PATH = re.compile(r"[^\x21-\x7e]|%")
_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                404: "Not Found", 413: "Payload Too Large", 429: "Too Many Requests",
                499: "Client Closed Request", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Timeout"}
_DOWN = frozenset({"stopped", "failed"})
SLEEPING = "sleeping"
CLIENT_GONE = 499


class InstanceProxy:
    """Serves one public port for one instance (or its shared-queue pool)."""

    def __init__(self, instance_id: str, instances: Instances, gates: Gates, pool: UpstreamPool,
                 keys: ApiKeyService, require_auth: Callable[[], bool], timeout: float,
                 recording: ProxyRecording | None = None) -> None:
        self.instance_id = instance_id
        self.instances = instances
        self.gates = gates
        self.pool = pool
        self.keys = keys
        self.require_auth = require_auth
        self.timeout = timeout
        self.recording = recording

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        arrived = time.monotonic()
        path = environ.get("PATH_INFO") or "/"
        ticket = turn = None
        try:
            if not environ.get(PREAUTHORISED):
                decide(Access.MODEL, header_credential(self.keys, environ), self.require_auth())
            inference_path = path in inference.INFERENCE_PATHS
            if inference_path and self.recording is not None:
                turn = self.recording.begin(path, arrived)
            raw = read_body(environ)
            live = self._live(self.instance_id)
            body = None
            if inference_path:
                body = inference.parse(raw)
                self._check_model(body, live["model_name"], turn)  # before queueing or waking
                ticket = self.gates.admit(self.instance_id, self.timeout, client_gone(environ))
            elif live["status"] == SLEEPING and path in inference.PROBE_PATHS:
                raise Unavailable("instance is sleeping", status=SLEEPING)
            member = ticket.member_id if ticket else self.instance_id
            target = self.instances.ensure_running(member, self.timeout)
            if body is not None:
                raw = inference.apply_overrides(raw, body, live if member == self.instance_id else self._live(member))
            if turn is not None:
                turn.instance_id, turn.waited_s = member, time.monotonic() - arrived
            response = self.pool.open(environ["REQUEST_METHOD"], target.host, target.port,
                                      request_target(environ), upstream_headers(environ, target), raw)
        except LlamamanError as err:
            return self._refuse(start_response, err.status, err.message, ticket, turn, path)
        except UpstreamError as err:
            return self._refuse(start_response, 504 if err.timeout else 502, str(err), ticket, turn, path)
        headers = forward_headers(response.headers, drop=_DROP_CHUNKED if response.chunked else frozenset())
        headers.append(("Date", http_date()))
        if ticket is not None:
            headers += [("X-Llamaman-Instance", ticket.member_id), ("X-Llamaman-Admission", str(ticket.seq))]
        write = start_response(f"{response.status} {response.reason or _STATUS_TEXT.get(response.status, '')}",
                               headers)
        if response.chunked:
            write(b"")  # send the headers now: a WSGI server would hold them until the first chunk
        tap = None
        if turn is not None:
            tap = TurnTap(turn, response.status, response.headers.get("content-type") or "")
        return Relay(response, self, ticket, tap)

    def _check_model(self, body: object, loaded: str, turn: Turn | None) -> None:
        if turn is None:
            inference.check_model(body, loaded)
            return
        requested = body.get("model") if isinstance(body, dict) else None
        describe(turn, body, requested if isinstance(requested, str) and requested else loaded, self.instance_id)
        inference.check_model(body, loaded)
        turn.model = loaded  # the model that serves it, however the client named it

    def _live(self, instance_id: str) -> dict:
        live = self.instances.live(instance_id)
        if live is None:
            raise NotFound("instance no longer exists")
        if live["status"] in _DOWN:
            raise Unavailable(live.get("error") or f"instance is {live['status']}")
        return live

    def _refuse(self, start_response: Callable, status: int, message: str, ticket: Ticket | None,
                turn: Turn | None, path: str) -> list[bytes]:
        self.done(ticket)
        if turn is not None and self.recording is not None:
            self.recording.refused(turn, status, message)
        return json_error(start_response, status, message, path)

    def done(self, ticket: Ticket | None) -> None:
        """Release the request's gate slot (idle time counts from now)."""
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
            return readable(sock, 0) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True
    return gone


class Relay:
    """The response body: upstream bytes as they arrive.

    The WSGI server calls close() when the response ends or the client goes away; an
    unfinished upstream response is then closed at once, so llama-server stops generating.
    """

    __slots__ = ("broken", "closed", "finished", "proxy", "response", "tap", "ticket")

    def __init__(self, response: Response, proxy: InstanceProxy, ticket: Ticket | None,
                 tap: TurnTap | None) -> None:
        self.response = response
        self.proxy = proxy
        self.ticket = ticket
        self.tap = tap
        self.finished = self.closed = False
        self.broken: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self.tap is None:
                yield from self.response.stream()
            else:
                feed = self.tap.feed
                for chunk in self.response.stream():
                    yield chunk
                    feed(chunk)  # after the client has it
            self.finished = True
        except OSError as err:  # llama-server died mid-body: end the stream cleanly
            log.warning("upstream stream broke: %s", err)
            self.broken = f"llama-server stopped while streaming: {err}"
            if (self.response.headers.get("content-type") or "").startswith("text/event-stream"):
                yield b'data: {"error": "llama-server stopped while streaming"}\n\n'

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.finished:
            self.response.release_conn()
        else:
            self.response.close()
        self.proxy.done(self.ticket)
        if self.tap is not None and self.proxy.recording is not None:
            if not self.finished and self.broken is None:
                self.tap.turn.status, self.tap.turn.error = CLIENT_GONE, "client disconnected"
            self.proxy.recording.finish(self.tap, self.broken)


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
    """The path and query to send upstream (the decoded path quoted again when it needs it)."""
    path = environ.get("PATH_INFO") or "/"
    if _UNSAFE_PATH.search(path):
        path = quote(path, safe="/!$&'()*+,;=:@-._~")
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


def upstream_headers(environ: dict, target: Target) -> dict[str, str]:
    """Client headers minus hop-by-hop ones and credentials, plus the internal key."""
    headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
               if key[:5] == "HTTP_" and key not in _DROP_ENV}
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    headers["Authorization"] = f"Bearer {target.api_key}"
    return headers


_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header value, formatted once a second (the WSGI server would do it per response)."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]


def json_error(start_response: Callable, status: int, message: str, path: str = "") -> list[bytes]:
    payload = json.dumps(error_body(status, message, path)).encode()
    start_response(f"{status} {_STATUS_TEXT.get(status, 'Error')}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                    ("Date", http_date())])
    return [payload]
