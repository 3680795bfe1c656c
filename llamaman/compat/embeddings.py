"""Embeddings: Ollama /api/embed and /api/embeddings, OpenAI /v1/embeddings, served by an
embedding-flagged instance of the model (started on demand, never counted against the cap)."""
from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Response, jsonify

from llamaman.errors import Invalid, LlamamanError
from llamaman.http import json_body, services
from llamaman.validation import get_str

bp = Blueprint("embeddings", __name__)


class UpstreamFailed(LlamamanError):
    status = 502


@bp.post("/api/embed")
def embed():
    arrived = time.monotonic()
    body = json_body()
    name = get_str(body, "model", required=True, allow_empty=False)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise Invalid("'input' must be a string or a list of strings")
    data, waited = _embed(name, inputs, "ollama")
    return jsonify({"model": name, "embeddings": [d["embedding"] for d in data["data"]],
                    "total_duration": int((time.monotonic() - arrived) * 1e9), "load_duration": int(waited * 1e9),
                    "prompt_eval_count": (data.get("usage") or {}).get("prompt_tokens", 0)})


@bp.post("/api/embeddings")
def embeddings_legacy():
    body = json_body()
    name = get_str(body, "model", required=True, allow_empty=False)
    prompt = get_str(body, "prompt", required=True, max_len=10_000_000)
    data, _ = _embed(name, [prompt], "ollama")
    return jsonify({"embedding": data["data"][0]["embedding"]})


@bp.post("/v1/embeddings")
def openai_embeddings():
    body = json_body()
    name = get_str(body, "model", required=True, allow_empty=False)
    if not isinstance(body.get("input"), (str, list)):
        raise Invalid("'input' must be a string or a list")
    data, _ = _embed(name, body["input"], "openai")
    return Response(json.dumps({**data, "model": name}), mimetype="application/json")


def _embed(name: str, inputs: Any, launcher: str) -> tuple[dict[str, Any], float]:
    svc = services()
    with svc.scheduler.serving(name, launcher, embedding=True) as instance_id:
        opened = svc.forwarder.open(instance_id, "/v1/embeddings", {"input": inputs})
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
    return data, opened.waited_s
