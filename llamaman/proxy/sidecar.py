"""The sidecar: the WSGI app on an instance's public port.

Per request: auth guard → body limit → model check → then the Pipeline (proxy/admission.py):
FIFO gate → wake if asleep → sampling overrides → llama-server with the internal key; bytes
relayed as they arrive.
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
from urllib.parse import quote

from llamaman.auth.guard import Access, decide
from llamaman.auth.keys import ApiKeyService, header_credential
from llamaman.errors import LlamamanError, NotFound, TooLarge, Unavailable, error_body
from llamaman.proxy import inference
from llamaman.proxy.admission import Admission, Pipeline
from llamaman.proxy.contract import PREAUTHORISED, SOCKET_KEY, Instances
from llamaman.proxy.http1 import readable
from llamaman.proxy.upstream import (
    HOP_BY_HOP,
    Response,
    forward_headers,
)
from llamaman.webio import MAX_BODY_BYTES

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


class InstanceProxy:
    """Serves one public port for one instance (or its shared-queue pool).

    The steps a subclass may add to (proxy/record.py records turns): check_model, refuse, relay.
    """

    def __init__(self, instance_id: str, instances: Instances, pipeline: Pipeline, keys: ApiKeyService,
                 require_auth: Callable[[], bool]) -> None:
        self.instance_id = instance_id
        self.instances = instances
        self.pipeline = pipeline
        self.keys = keys
        self.require_auth = require_auth

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        arrived = time.monotonic()
        try:
            if not environ.get(PREAUTHORISED):
                decide(Access.MODEL, header_credential(self.keys, environ), self.require_auth())
        except LlamamanError as err:
            return json_error(start_response, err.status, err.message, environ.get("PATH_INFO") or "/")
        return self.serve(environ, start_response, arrived)

    def serve(self, environ: dict, start_response: Callable, arrived: float) -> Iterable[bytes]:
        """Answer an authorised request: model check, gate, wake, overrides, relay."""
        path = environ.get("PATH_INFO") or "/"
        admission = None
        try:
            raw = read_body(environ)
            live = self._live(self.instance_id)
            body = None
            if path in inference.INFERENCE_PATHS:
                body = inference.parse(raw)
                self.check_model(environ, body, live["model_name"])  # before queueing or waking
                admission = self.pipeline.admit(self.instance_id, client_gone(environ), arrived)
            elif live["status"] == SLEEPING and path in inference.PROBE_PATHS:
                raise Unavailable("instance is sleeping", status=SLEEPING)
            response = self.pipeline.open(admission, self.instance_id, live, environ["REQUEST_METHOD"],
                                          request_target(environ), upstream_headers(environ), raw, body)
        except LlamamanError as err:  # UpstreamFailed included: 502, or 504 when it timed out
            return self.refuse(environ, start_response, err.status, err.message, admission)
        headers = forward_headers(response.headers, drop=_DROP_CHUNKED if response.chunked else frozenset())
        headers.append(("Date", http_date()))
        if admission is not None:
            ticket = admission.ticket
            headers += [("X-Llamaman-Instance", ticket.member_id), ("X-Llamaman-Admission", str(ticket.seq))]
        relay = self.relay(environ, response, admission)
        try:
            write = start_response(f"{response.status} {response.reason or _STATUS_TEXT.get(response.status, '')}",
                                   headers)
            if response.chunked:
                write(b"")  # send the headers now: a WSGI server would hold them until the first chunk
        except BaseException:  # the client went away before the headers: nothing will close the relay
            relay.close()
            raise
        return relay

    def check_model(self, environ: dict, body: object, loaded: str) -> None:
        """NotFound unless the request names the loaded model (or none)."""
        inference.check_model(body, loaded)

    def refuse(self, environ: dict, start_response: Callable, status: int, message: str,
               admission: Admission | None) -> list[bytes]:
        """Answer with an error; the request's gate slot is free again."""
        if admission is not None:
            admission.release()
        return json_error(start_response, status, message, environ.get("PATH_INFO") or "/")

    def relay(self, environ: dict, response: Response, admission: Admission | None) -> Relay:
        """The response body to hand to the WSGI server."""
        return Relay(response, admission)

    def _live(self, instance_id: str) -> dict:
        live = self.instances.live(instance_id)
        if live is None:
            raise NotFound("instance no longer exists")
        if live["status"] in _DOWN:
            raise Unavailable(live.get("error") or f"instance is {live['status']}")
        return live


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
    unfinished upstream response is then closed at once, so llama-server stops generating,
    and the request's gate slot is released (once, even when closing the upstream fails).
    """

    __slots__ = ("admission", "broken", "closed", "finished", "response")

    def __init__(self, response: Response, admission: Admission | None) -> None:
        self.response = response
        self.admission = admission
        self.finished = self.closed = False
        self.broken: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.chunks()
            self.finished = True
        except OSError as err:  # llama-server died mid-body: end the stream cleanly
            log.warning("upstream stream broke: %s", err)
            self.broken = f"llama-server stopped while streaming: {err}"
            if (self.response.headers.get("content-type") or "").startswith("text/event-stream"):
                yield b'data: {"error": "llama-server stopped while streaming"}\n\n'

    def chunks(self) -> Iterator[bytes]:
        """The upstream body as it arrives."""
        return self.response.stream()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.finished:
                self.response.release_conn()
            else:
                self.response.close()
        finally:
            if self.admission is not None:
                self.admission.release()


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


def upstream_headers(environ: dict) -> dict[str, str]:
    """Client headers minus hop-by-hop ones and credentials (the pipeline adds the internal key)."""
    headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
               if key[:5] == "HTTP_" and key not in _DROP_ENV}
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
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
