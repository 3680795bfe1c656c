"""OpenAI chat and completions with on-demand loading; the response names the model as asked."""
from __future__ import annotations

import json

from flask import Blueprint, Response

from llamaman.compat.streams import open_upstream, relay_sse
from llamaman.recording.turn import Turn, refusals_recorded
from llamaman.validation import get_bool, get_str
from llamaman.webio import json_body, services

bp = Blueprint("openai", __name__)


@bp.post("/v1/chat/completions")
def chat_completions():
    return _serve("/v1/chat/completions")


@bp.post("/v1/completions")
def completions():
    return _serve("/v1/completions")


@bp.post("/completion")
def llama_completion():
    """llama-server's own completion API (`prompt`, `n_predict`...), routed by `model`."""
    return _serve("/completion")


def _serve(path: str):
    body = json_body()
    name = get_str(body, "model", required=True, allow_empty=False)
    svc = services()
    turn = Turn(path, name, body, body.get("stream") is True)
    with refusals_recorded(turn, svc.recorder):
        stream = get_bool(body, "stream", default=False)
        with svc.scheduler.serving(name, "openai") as instance_id:
            opened = open_upstream(svc.forwarder, instance_id, path, body)
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
                       lambda failure: _finish(turn, failure, svc.recorder))
    return Response(events, mimetype="text/event-stream",  # runs after the request context is gone
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _seen(turn: Turn, event: dict, name: str) -> dict:
    turn.observe(event)
    event["model"] = name
    return event


def _finish(turn: Turn, failure: tuple[int, str] | None, recorder) -> None:
    if failure is not None:
        turn.status, turn.error = failure
    recorder.submit(turn.as_record())


def _observe_whole(turn: Turn, raw: bytes) -> None:
    try:
        data = json.loads(raw)
    except ValueError:
        return
    if isinstance(data, dict):
        turn.observe(data)


def _renamed(raw: bytes, name: str) -> bytes:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(data, dict) and "model" in data:
        data["model"] = name
    return json.dumps(data).encode()
