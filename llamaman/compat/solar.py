"""Solar Host's live log socket (seed 003): `WS /instances/{id}/logs`, lines with sequence numbers.

Each message is `{"seq": n, "line": "..."}`; `seq` is the byte offset after the line in the
instance's append-only log (the SSE stream's event id), so a client reconnecting with
`?after=<last seq>` continues with the next line: no gap, no duplicate. Served by the same
gunicorn gthread worker through flask-sock (one thread per open socket, like an SSE stream).
flask-sock is imported on the first connection: it brings simple-websocket and asyncio, ~2.4 MB
of RSS in every worker that most deployments never use.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, g, request

from llamaman.compat.llamactl_instances import instance_id
from llamaman.errors import Forbidden, Invalid
from llamaman.webio import services

bp = Blueprint("solar", __name__)

SOLAR_PATH = "/instances/<ref>/logs"  # an id, as Solar Host has it (a unique name works too)
API_PATH = "/api/instances/<ref>/logs/ws"
MAX_BACKLOG = 10_000


@bp.before_request
def check_handshake():
    """Refuse before the upgrade: unknown instance (404), bad resume point (400), foreign origin."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise Forbidden("cross-origin WebSocket connections are refused")
    g.instance_id = instance_id(request.view_args["ref"])
    g.after = _digits("after", None)
    g.backlog = int(_digits("lines", "100"))
    if g.backlog > MAX_BACKLOG:
        raise Invalid(f"'lines' must be at most {MAX_BACKLOG}")


class _Capture:
    """Stands in for a blueprint so that flask-sock hands over the view it builds."""

    view: Callable

    def route(self, path: str, **options) -> Callable:
        return lambda view: setattr(self, "view", view)


def websocket(path: str) -> Callable:
    """Like flask-sock's `Sock.route(path, bp=bp)`, with flask-sock loaded on the first connection."""
    def decorator(handler: Callable) -> Callable:
        built: list[Callable] = []

        @wraps(handler)
        def view(**kwargs):
            if not built:
                from flask_sock import Sock

                capture = _Capture()
                Sock().route(path, bp=capture)(handler)
                built.append(capture.view)
            return built[0](**kwargs)

        bp.route(path, websocket=True)(view)
        return handler
    return decorator


@websocket(SOLAR_PATH)
def solar_logs(ws, ref: str) -> None:
    stream_logs(ws)


@websocket(API_PATH)
def api_logs(ws, ref: str) -> None:
    stream_logs(ws)


def stream_logs(ws) -> None:
    """Send log lines as they are written until the client goes away or the app stops."""
    from simple_websocket import ConnectionClosed

    instances = services().instances
    alive = lambda: ws.connected and not instances.closing
    try:
        for entry in instances.logs.entries(g.instance_id, g.after, g.backlog, alive):
            if entry is not None:
                ws.send(json.dumps({"seq": entry[0], "line": entry[1]}))
    except ConnectionClosed:
        return


def _digits(name: str, default: str | None) -> str | None:
    raw = request.args.get(name, default)
    if raw is not None and not raw.isdigit():
        raise Invalid(f"'{name}' must be a non-negative integer (a seq from an earlier message)")
    return raw
