"""Embeddings: Ollama /api/embed and /api/embeddings, OpenAI /v1/embeddings, served by an
embedding-flagged instance of the model (started on demand, never counted against the cap)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify

from llamaman.compat.streams import open_upstream
from llamaman.errors import Invalid, UpstreamFailed
from llamaman.recording.turn import Turn, refusals_recorded
from llamaman.validation import get_str
from llamaman.webio import json_body, services

bp = Blueprint("embeddings", __name__)


@bp.post("/api/embed")
def embed():
    data, turn = _serve("/api/embed", "ollama", _ollama_inputs)
    return jsonify({"model": turn.model, "embeddings": [d["embedding"] for d in data["data"]],
                    "total_duration": int((time.monotonic() - turn.arrived) * 1e9),
                    "load_duration": int(turn.waited_s * 1e9),
                    "prompt_eval_count": (data.get("usage") or {}).get("prompt_tokens", 0)})


@bp.post("/api/embeddings")
def embeddings_legacy():
    data, _ = _serve("/api/embeddings", "ollama",
                     lambda body: [get_str(body, "prompt", required=True, max_len=10_000_000)])
    return jsonify({"embedding": data["data"][0]["embedding"]})


@bp.post("/v1/embeddings")
def openai_embeddings():
    data, turn = _serve("/v1/embeddings", "openai", _openai_inputs)
    return Response(json.dumps({**data, "model": turn.model}), mimetype="application/json")


def _ollama_inputs(body: dict[str, Any]) -> list[str]:
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise Invalid("'input' must be a string or a list of strings")
    return inputs


def _openai_inputs(body: dict[str, Any]) -> Any:
    if not isinstance(body.get("input"), (str, list)):
        raise Invalid("'input' must be a string or a list")
    return body["input"]


def _serve(endpoint: str, launcher: str, read_inputs: Callable[[dict[str, Any]], Any]) -> tuple[dict[str, Any], Turn]:
    """Validate, embed on the model's embedding instance, and record the turn (refusals too)."""
    body = json_body()
    name = get_str(body, "model", required=True, allow_empty=False)
    svc = services()
    turn = Turn(endpoint, name, body, False)
    with refusals_recorded(turn, svc.recorder):
        inputs = read_inputs(body)
        data, turn.instance_id, turn.waited_s = _embed(name, inputs, launcher)
    turn.usage = data.get("usage")
    svc.recorder.submit(turn.as_record())
    return data, turn


def _embed(name: str, inputs: Any, launcher: str) -> tuple[dict[str, Any], str, float]:
    svc = services()
    with svc.scheduler.serving(name, launcher, embedding=True) as instance_id:
        opened = open_upstream(svc.forwarder, instance_id, "/v1/embeddings", {"input": inputs})
    try:
        raw = opened.response.read()
        status = opened.response.status
    finally:
        opened.close()
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    if status >= 400 or not isinstance(data.get("data"), list):
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        failure = UpstreamFailed(message or f"llama-server answered {status}")
        failure.status = status if 400 <= status < 500 else 502  # a client error stays one
        raise failure
    return data, opened.ticket.member_id, opened.waited_s
