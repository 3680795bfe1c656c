"""OpenAI chat and completions with on-demand loading; the response names the model as asked."""
from __future__ import annotations

import json

from flask import Blueprint, Response, stream_with_context

from llamaman.compat.streams import relay_sse
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
    svc = services()
    instance_id = svc.scheduler.instance_for(name, "openai")
    opened = svc.forwarder.open(instance_id, path, body)
    response = opened.response
    if response.status >= 400 or not stream:
        raw = response.read()
        opened.close()
        return Response(_renamed(raw, name), status=response.status,
                        mimetype=response.headers.get("Content-Type", "application/json").split(";")[0])
    events = relay_sse(opened, lambda event: {**event, "model": name})
    return Response(stream_with_context(events), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _renamed(raw: bytes, name: str) -> bytes:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(data, dict) and "model" in data:
        data["model"] = name
    return json.dumps(data).encode()
