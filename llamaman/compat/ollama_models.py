"""Ollama model management: /api/show, /api/pull, /api/delete."""
from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, jsonify, stream_with_context

from llamaman.compat import catalog
from llamaman.compat.ollama_pull import pull_progress, start_pull, wait_pull
from llamaman.errors import NotFound
from llamaman.instances import records as rec
from llamaman.models.routes import busy_paths
from llamaman.validation import get_str
from llamaman.webio import json_body, services

bp = Blueprint("ollama_models", __name__)


@bp.post("/api/show")
def show():
    body = json_body()
    name = get_str(body, "model") or get_str(body, "name", required=True, allow_empty=False)
    entry = _entry(name)
    info = services().library.metadata(entry["path"])
    return jsonify({
        "modelfile": "",
        "parameters": "",
        "template": info.get("chat_template") or "",
        "details": catalog.details(entry),
        "model_info": _model_info(entry, info),
        "capabilities": capabilities(entry, info.get("chat_template") or ""),
        "modified_at": catalog.ollama_tags([entry])["models"][0]["modified_at"] if catalog.servable([entry]) else None,
    })


@bp.post("/api/pull")
def pull():
    """Queue `org/repo[:tag]` from HuggingFace (tag = quantization, default latest → Q4_K_M) into
    MODELS_DIR/<org>/<repo>; streams Ollama's NDJSON progress, or waits for the end (stream: false)."""
    body = json_body()
    name = get_str(body, "model") or get_str(body, "name", required=True, allow_empty=False)
    downloads = services().downloads
    job_id = start_pull(downloads, name)
    if body.get("stream", True) is False:
        final = wait_pull(downloads, job_id, alive=lambda: not downloads.closing)
        return jsonify(final), 500 if "error" in final else 200
    progress = pull_progress(downloads, job_id, alive=lambda: not downloads.closing)
    lines = (json.dumps(line) + "\n" for line in progress)
    return Response(stream_with_context(lines), mimetype="application/x-ndjson")


@bp.delete("/api/delete")
def delete():
    body = json_body()
    name = get_str(body, "model") or get_str(body, "name", required=True, allow_empty=False)
    svc = services()
    entry = _entry(name)
    return jsonify(svc.library.delete(entry["path"], busy=busy_paths(svc.instances.list())))


def _entry(name: str) -> dict[str, Any]:
    entry = services().library.find(name)
    if entry is None:
        raise NotFound(f"model '{name}' not found")
    return entry


def effective_context(entry: dict[str, Any]) -> int | None:
    """The context a client will get: running instance > preset > the GGUF's trained length."""
    svc = services()
    for instance in svc.instances.list():
        if entry["path"] in (instance["model_path"], instance.get("real_model_path")) \
                and instance["status"] in rec.ACTIVE and instance.get("ctx_size"):
            return instance["ctx_size"]
    preset = svc.presets.launch_body(entry["path"], {})
    return preset.get("ctx_size") or entry.get("context_length")


def _model_info(entry: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    arch = entry.get("architecture") or "unknown"
    model_info = {k: v for k, v in (info.get("metadata") or {}).items()
                  if isinstance(v, (str, int, float, bool)) and not k.startswith("tokenizer.")}
    model_info["general.architecture"] = arch
    model_info[f"{arch}.context_length"] = effective_context(entry)
    if entry.get("layers") is not None:
        model_info[f"{arch}.block_count"] = entry["layers"]
    return model_info


def capabilities(entry: dict[str, Any], template: str) -> list[str]:
    """What the model can do, from its chat template and companions (mmproj)."""
    found = ["completion"]
    if re.search(r"\btools?\b", template):
        found.append("tools")
    if entry.get("mmproj"):
        found.append("vision")
    if "<think>" in template or "reasoning" in template or "enable_thinking" in template:
        found.append("thinking")
    if "embed" in (entry.get("name") or ""):
        found.append("embedding")
    return found
