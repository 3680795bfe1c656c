"""What the proxy does to inference request bodies: the model check and sampling overrides."""
from __future__ import annotations

import json
from typing import Any

from llamaman.errors import Invalid, NotFound

INFERENCE_PATHS = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/completion", "/chat/completions",
})
# Read-only probes: answered "sleeping" instead of waking a sleeping instance.
PROBE_PATHS = frozenset({"/health", "/slots", "/metrics", "/props"})
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
    if not isinstance(body, dict):  # no body, or not JSON: llama-server answers for itself
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


INVALID = object()  # a body that is not JSON


def parse(raw: bytes | None) -> Any:
    """The JSON body of an inference request, None when empty, INVALID when not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return INVALID


def apply_overrides(raw: bytes | None, body: Any, options: dict[str, Any]) -> bytes | None:
    """The body to send: re-encoded only when overrides change it."""
    forced = overrides(options)
    if not forced:
        return raw
    if body is INVALID:
        raise Invalid("request body is not valid JSON")
    if not isinstance(body, dict):
        return raw
    return json.dumps({**body, **forced}).encode()
