"""OpenAI chat and completions with on-demand loading; the response names the model as asked."""
from __future__ import annotations

import json

from flask import Blueprint, Response, stream_with_context

from llamaman.compat.streams import relay_sse
from llamaman.compat.turns import Turn
from llamaman.http import json_body, services
from llamaman.validation import get_bool, get_str

bp = Blueprint("openai", __name__)


@bp.post("/v1/chat/completions")
def chat_completions():
    return _serve("/v1/chat/completions")


@bp.post("/v1/completions")
def completions():
    return _serve("/v1/completions")


def _serve(path: str):
    body = json_body()
    name = get_str(body, "model", required=True, allow_empty=False)
    stream = get_bool(body, "stream", default=False)
    turn = Turn(path, name, body, stream)
    svc = services()
    with svc.scheduler.serving(name, "openai") as instance_id:
        opened = svc.forwarder.open(instance_id, path, body)
    turn.instance_id, turn.waited_s = opened.ticket.member_id, opened.waited_s
    response = opened.response
    if response.status >= 400 or not stream:
        raw = response.read()
        opened.close()
        turn.status = response.status
        _observe_whole(turn, raw)
        svc.recorder.submit(turn.as_record())
        return Response(_renamed(raw, name), status=response.status,
                        mimetype=response.headers.get("Content-Type", "application/json").split(";")[0])
    events = relay_sse(opened, lambda event: _seen(turn, event, name),
                       lambda: svc.recorder.submit(turn.as_record()))
    return Response(stream_with_context(events), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _seen(turn: Turn, event: dict, name: str) -> dict:
    turn.observe(event)
    return {**event, "model": name}


def _observe_whole(turn: Turn, raw: bytes) -> None:
    try:
        data = json.loads(raw)
    except ValueError:
        return
    if isinstance(data, dict):
        turn.observe(data)
        if turn.status >= 400:
            turn.error = str(data.get("error"))[:500]


def _renamed(raw: bytes, name: str) -> bytes:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(data, dict) and "model" in data:
        data["model"] = name
    return json.dumps(data).encode()
