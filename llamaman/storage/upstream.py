"""LlamaMan 1.2.1 records in our form: pure conversions shared by the JSON and SQL imports.

Upstream keeps users keyed by username without an id, API keys without a scope and with
`key_hash`, instances and downloads as lists, presets keyed by model path with some other
field names, settings with other key names (per-node toggles under `nodes.<node>`), and
request-log rows with an ISO `created_at`. Upstream fields we have no use for are kept
in the record (the API shows them; nothing reads them) so nothing they held is lost.
"""
from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from llamaman.storage.base import Record

log = logging.getLogger(__name__)


class DomainRecords(Protocol):
    """What the imports need from the rooms above storage: upstream presets, instances and model
    sources in our forms (llamaman.dropin provides it; storage must not import those rooms)."""

    def preset(self, model_path: str, record: Record) -> Record: ...

    def instance(self, record: Record, node: str) -> Record: ...

    def sidecars(self, model_sources: Any) -> int: ...

VERSION = "llamaman-1.2.1"
# Upstream preset/instance-config names that have a meaning here, with our name.
PRESET_RENAMES = {
    "spec_enabled": "spec_decoding",
    "spec_draft_n_max": "draft_n_max",
    "embedding_model": "embedding",
    "auto_restart_on_crash": "auto_restart",
}

SETTINGS_RENAMES = {
    "recording_mode": "request_recording_mode",
    "recording_retention_days": "request_recording_retention_days",
    "global_speed_limit_mbps": "download_speed_limit_mbps",
}
NODE_KEYS = ("admin_ui_enforce_max_models", "allow_ollama_api_override_admin", "docker_images")


def iso_epoch(value: Any) -> float | None:
    """Epoch seconds of an ISO-8601 time ('Z' or naive = UTC), a datetime, or a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return None


def user(record: Record) -> Record:
    """An upstream user (no id; every upstream user is an admin) in our form."""
    username = record["username"]
    return {
        **record,
        "id": "u-" + hashlib.sha256(username.lower().encode()).hexdigest()[:16],
        "username": username,
        "role": "admin",
        "created_at": record.get("created_at") or time.time(),
    }


def api_key(record: Record) -> Record:
    """An upstream key: same hash (SHA-256 of the token); admin, since it had no scope."""
    return {
        "id": str(record["id"]),
        "name": record.get("name") or "",
        "scope": "admin",
        "prefix": record.get("prefix") or "",
        "hash": record["key_hash"],
        "created_at": iso_epoch(record.get("created_at")) or time.time(),
        "created_by": None,
    }


def download(record: Record, node: str) -> Record:
    """An upstream download job in our job form; its upstream fields kept beside ours."""
    started = record.get("started_at")
    dest = record.get("dest_path") or None
    return {
        **record,
        "id": str(record["id"]), "node": record.get("node_id") or node,
        "kind": "file", "layout": "repo", "repo_id": record.get("repo_id"),
        "filename": record.get("filename") or None, "tag": None,
        "dest_path": dest, "destination": dest,
        "speed_limit_mbps": float(record.get("per_model_speed_limit_mbps") or 0),
        "retries": int(record.get("retry_attempts") or 0), "source": "llamaman-1.2.1",
        "status": record.get("status") or "failed", "error": record.get("error"),
        "current_file": None, "files": [], "total_bytes": None, "downloaded_bytes": 0,
        "revision": None, "created_at": started, "updated_at": started,
        "started_at": started, "finished_at": started,
    }


def settings(doc: Record) -> tuple[Record, dict[str, Record]]:
    """Upstream's settings document as (our global document, per-node documents)."""
    glob = {k: v for k, v in doc.items() if k not in SETTINGS_RENAMES and k != "nodes"}
    for old, new in SETTINGS_RENAMES.items():
        if old in doc:
            glob[new] = doc[old]
    tokens = [t for t in doc.get("huggingface_tokens") or [] if isinstance(t, dict) and t.get("token")]
    if tokens and not glob.get("hf_token"):
        glob["hf_token"] = tokens[0]["token"]  # upstream's first token is the one the UI preselects
    nodes = {
        name: {k: v for k, v in values.items() if k in NODE_KEYS}
        for name, values in (doc.get("nodes") or {}).items()
        if isinstance(values, dict)
    }
    return glob, nodes


def is_upstream_settings(doc: Any) -> bool:
    """True for a settings document still in upstream's key names."""
    return isinstance(doc, dict) and (
        isinstance(doc.get("nodes"), dict) or any(k in doc for k in SETTINGS_RENAMES))


def log_record(record: Record, fallback_id: str) -> Record | None:
    """A request-log record with our fields (ts, id, durations in s) beside upstream's."""
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        ts = iso_epoch(record.get("created_at"))
    if ts is None:
        return None
    out = {**record, "ts": float(ts), "id": str(record.get("id") or fallback_id)}
    out.setdefault("conversation_id", out["id"])
    for ours, theirs, scale in (("duration_s", "duration_ms", 1000), ("ttft_s", "ttft_ms", 1000),
                                ("gen_tps", "tokens_per_sec", 1), ("status", "status_code", 1)):
        if ours not in out and isinstance(record.get(theirs), (int, float)):
            out[ours] = record[theirs] / scale if scale != 1 else record[theirs]
    for ours, theirs in (("request", "request_body"), ("response", "response_body")):
        if theirs in record:
            out.setdefault(ours, record[theirs])
    return out
