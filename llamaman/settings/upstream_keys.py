"""LlamaMan 1.2.1's settings keys: shown beside ours, accepted in a save, echo-safe.

A script written for LlamaMan reads and writes `recording_mode`, `recording_retention_days`
and `global_speed_limit_mbps`, posts back what GET gave it (including read-only keys), and
may send numbers as strings; each of these keeps working here.
"""
from __future__ import annotations

from typing import Any

from llamaman.storage.upstream import SETTINGS_RENAMES

# Shown by GET but set elsewhere (token routes, downloads, the import): ignored in a save.
READ_ONLY = frozenset({"huggingface_tokens", "_schema_version", "model_sources", "nodes"})
_NUMBERS = frozenset({"retry_count_per_failed_download", "request_recording_retention_days",
                      "download_speed_limit_mbps", "downloads_max_age_hours",
                      "instances_max_age_hours", "stale_records_interval_min"})


def shown(effective: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """Upstream's keys for a GET: aliases of ours, the token list masked, stored extras."""
    extra: dict[str, Any] = {old: effective[new] for old, new in SETTINGS_RENAMES.items()}
    extra["huggingface_tokens"] = [token_view(t) for t in stored.get("huggingface_tokens") or []
                                   if isinstance(t, dict) and t.get("id")]
    for key in ("_schema_version", "model_sources"):
        if key in stored:
            extra[key] = stored[key]
    return extra


def token_view(token: dict[str, Any]) -> dict[str, Any]:
    secret = str(token.get("token") or "")
    preview = f"{secret[:6]}...{secret[-4:]}" if len(secret) > 10 else "..."
    return {"id": token["id"], "name": token.get("name", "Untitled"), "preview": preview,
            "created_at": token.get("created_at", 0)}


def normalise(patch: Any, current: dict[str, Any]) -> Any:
    """A patch in our keys: aliases renamed, read-only keys dropped, numeric strings converted."""
    if not isinstance(patch, dict):
        return patch
    body = {k: v for k, v in patch.items() if k not in READ_ONLY}
    for old, new in SETTINGS_RENAMES.items():
        if old in body:
            _merge_alias(body, old, new, current.get(new))
    body = {k: _number(k, v) for k, v in body.items()}
    if isinstance(body.get("cleanup"), dict):
        body["cleanup"] = {k: _number(k, v) for k, v in body["cleanup"].items()}
    return body


def _merge_alias(body: dict[str, Any], old: str, new: str, current: Any) -> None:
    """Move body[old] to body[new]; when both are sent, the one that changes the value wins."""
    value = body.pop(old)
    if new not in body or _number(new, body[new]) == current:
        body[new] = value


def _number(key: str, value: Any) -> Any:
    """A numeric string of a numeric key as its number ("5" -> 5, "2.5" -> 2.5); else value."""
    if key not in _NUMBERS or not isinstance(value, str):
        return value
    text = value.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return value  # the validator names the bad field
