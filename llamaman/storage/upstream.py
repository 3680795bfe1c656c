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
from pathlib import Path
from typing import Any

from llamaman.errors import LlamamanError
from llamaman.storage.base import Record

log = logging.getLogger(__name__)

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


def preset(model_path: str, record: Record) -> Record:
    """An upstream preset: renamed fields, our valid fields, upstream's extras kept."""
    renamed = {PRESET_RENAMES.get(k, k): v for k, v in record.items()}
    unknown = {k: v for k, v in renamed.items() if k not in _preset_fields()}
    return {**unknown, **_valid_preset_fields(renamed), "model_path": model_path}


def _preset_fields() -> frozenset[str]:
    from llamaman.presets.validate import PRESET_FIELDS

    return PRESET_FIELDS


def _valid_preset_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields our presets know, each checked alone; a bad or null one is dropped."""
    from llamaman.presets.validate import (  # presets import storage
        PRESET_FIELDS,
        parse_fields,
    )

    kept = {}
    for key, value in body.items():
        if key not in PRESET_FIELDS or value is None:
            continue
        try:
            kept.update(parse_fields({key: value}))
        except LlamamanError as err:
            log.warning("LlamaMan preset field %s=%r not imported: %s", key, value, err.message)
    return kept


def instance(record: Record, node: str) -> Record:
    """An upstream instance record (stopped by the switch) as our stopped instance."""
    from llamaman.instances import records as rec

    config = _valid_preset_fields({PRESET_RENAMES.get(k, k): v
                                   for k, v in (record.get("config") or {}).items()})
    settings = {k: v for k, v in config.items() if k in rec.SETTINGS_FIELDS}
    options = {**rec.LIVE_DEFAULTS, **rec.RESTART_DEFAULTS,
               **{k: v for k, v in config.items() if k not in rec.SETTINGS_FIELDS}}
    path = str(record.get("model_path") or "")
    status = record.get("status") if record.get("status") == rec.FAILED else rec.STOPPED
    started = record.get("started_at")
    return {
        **record, **options,
        "id": str(record["id"]), "name": rec.model_stem(path) if path else str(record["id"]),
        "node": record.get("node_id") or node, "model_path": path, "real_model_path": path,
        "model_name": rec.model_stem(path) if path else "", "port": record.get("port"),
        "internal_port": None, "api_key": None, "launched_by": "admin", "status": status,
        "settings": _settings_body(settings), "restarts": 0,
        "created_at": started, "started_at": started, "healthy_at": None, "load_time_s": None,
        "stopped_at": None, "error": None, "runtime": None, "last_request_at": None,
    }


def _settings_body(fields: dict[str, Any]) -> dict[str, Any]:
    from llamaman.runtime.launch_settings import LaunchSettings

    return LaunchSettings.from_body(fields).to_body()


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


def sidecars(model_sources: Any) -> int:
    """Write our repo-id sidecars for upstream's model sources that exist; return how many.

    A source folder gets one for itself and one for each GGUF in it (what our library reads).
    """
    from llamaman.models.source_file import valid_repo_id

    written = 0
    for path, source in (model_sources or {}).items() if isinstance(model_sources, dict) else ():
        repo_id = source.get("repo_id") if isinstance(source, dict) else None
        if not valid_repo_id(repo_id) or not Path(path).exists():
            continue
        ggufs = sorted(Path(path).rglob("*.gguf")) if Path(path).is_dir() else []
        written += sum(_sidecar(p, repo_id) for p in (Path(path), *ggufs))
    return written


def _sidecar(path: Path, repo_id: str) -> bool:
    """Write path's sidecar unless it has one; True when written."""
    from llamaman.models.source_file import read_sidecar, sidecar_path, write_sidecar

    if read_sidecar(sidecar_path(path)) is not None:
        return False
    try:
        write_sidecar(path, repo_id)
    except (OSError, LlamamanError) as err:
        log.warning("repo id of %s not recorded: %s", path, err)
        return False
    return True
