"""What the proxy does to inference request bodies: the model check and sampling overrides."""
from __future__ import annotations

import json
from typing import Any

from llamaman.errors import Invalid, NotFound

INFERENCE_PATHS = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/completion", "/chat/completions",
})
_OVERRIDES = (
    ("temperature", "proxy_sampling_temperature"),
    ("top_k", "proxy_sampling_top_k"),
    ("top_p", "proxy_sampling_top_p"),
    ("presence_penalty", "proxy_sampling_presence_penalty"),
)


def model_matches(requested: str, loaded: str) -> bool:
    """The README rule: lowercased, without extension or tag, a prefix of the loaded stem."""
    name = requested.strip().lower()
    if ":" in name:
        name = name.split(":", 1)[0]
    name = name.removesuffix(".gguf")
    return bool(name) and loaded.startswith(name)


def check_model(body: Any, loaded: str) -> None:
    """404 unless the body's model field (when present) names the loaded model."""
    if not isinstance(body, dict):
        return
    requested = body.get("model")
    if isinstance(requested, str) and requested.strip() and not model_matches(requested, loaded):
        raise NotFound(f"model '{requested}' is not loaded on this port")


def overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The sampling values to force on every request (empty when overrides are off)."""
    if not options.get("proxy_sampling_override_enabled"):
        return {}
    forced = {field: options[key] for field, key in _OVERRIDES}
    if options.get("proxy_sampling_repeat_penalty"):
        forced["repeat_penalty"] = options["proxy_sampling_repeat_penalty"]
    return forced


def prepare(path: str, raw: bytes | None, options: dict[str, Any]) -> bytes | None:
    """Check and rewrite an inference body; other bodies pass through untouched.

    Bytes are only re-encoded when an override changes them, so the common case costs
    one JSON parse.
    """
    if path not in INFERENCE_PATHS or not raw:
        return raw
    forced = overrides(options)
    try:
        body = json.loads(raw)
    except ValueError:
        if forced:
            raise Invalid("request body is not valid JSON") from None
        return raw  # nothing to check: llama-server gives its own error
    check_model(body, options["model_name"])
    if forced and isinstance(body, dict):
        body.update(forced)
        return json.dumps(body).encode()
    return raw
