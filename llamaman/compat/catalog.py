"""Model listings in the Ollama and OpenAI formats, from the library and the running instances."""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

NEVER_EXPIRES = "9999-12-31T23:59:59Z"
ACTIVE = frozenset({"starting", "healthy"})


def tag(name: str) -> str:
    """Ollama names carry a tag; llamaman models are all `:latest`."""
    return f"{name}:latest"


def digest(entry: dict[str, Any]) -> str:
    """A stable 64-hex identifier of one model file version."""
    return hashlib.sha256(f"{entry['path']}:{entry['size']}:{entry['modified']}".encode()).hexdigest()


def details(entry: dict[str, Any]) -> dict[str, Any]:
    family = entry.get("architecture") or ""
    return {
        "parent_model": "",
        "format": "gguf" if entry.get("type") == "gguf" else "safetensors",
        "family": family,
        "families": [family] if family else [],
        "parameter_size": entry.get("parameter_size") or "",
        "quantization_level": entry.get("quant") or "",
    }


def servable(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Library entries llama-server can load: readable, complete GGUF files."""
    return [e for e in entries if e.get("type") == "gguf" and not e.get("unreadable") and not e.get("incomplete")]


def ollama_tags(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The /api/tags body."""
    return {"models": [{
        "name": tag(e["name"]),
        "model": tag(e["name"]),
        "modified_at": _iso(e["modified"]),
        "size": e["size"],
        "digest": digest(e),
        "details": details(e),
    } for e in servable(entries)]}


def ollama_ps(instances: list[dict[str, Any]], entries: list[dict[str, Any]], last_use: dict[str, float]) -> dict[str, Any]:
    """The /api/ps body: running (or loading) instances, one per model and instance."""
    by_path = {e["path"]: e for e in entries}
    models = []
    for instance in instances:
        if instance["status"] not in ACTIVE:
            continue
        entry = by_path.get(instance["model_path"]) or {
            "path": instance["model_path"], "size": 0, "modified": 0, "type": "gguf"}
        size = entry["size"]
        models.append({
            "name": tag(instance["model_name"]),
            "model": tag(instance["model_name"]),
            "size": size,
            "digest": digest(entry),
            "details": details(entry),
            "expires_at": _expiry(instance, last_use.get(instance["id"])),
            "size_vram": 0 if instance.get("n_gpu_layers") == 0 else size,
            "context_length": instance.get("ctx_size"),
        })
    return {"models": models}


def openai_models(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The /v1/models body."""
    return {"object": "list", "data": [
        {"id": tag(e["name"]), "object": "model", "created": int(e["modified"]), "owned_by": "llamaman"}
        for e in servable(entries)]}


def _expiry(instance: dict[str, Any], last_use: float | None) -> str:
    minutes = instance.get("idle_timeout_min") or 0
    if minutes <= 0:
        return NEVER_EXPIRES
    start = last_use or instance.get("healthy_at") or instance.get("created_at")
    return _iso(start + minutes * 60)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
