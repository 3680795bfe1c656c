"""LlamaMan 1.2.1's instance fields, shown beside ours: `config`, `container_id`,
`container_name`, `log_file` and `stats`, so a script written for LlamaMan reads an instance
the way it did there. They are derived from our record on every read, never stored."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llamaman.instances.records import ACTIVE, LIVE_DEFAULTS

# Upstream's `config` keys that are ours under another name.
_RENAMED = {"embedding_model": "embedding", "spec_enabled": "spec_decoding",
            "spec_draft_n_max": "draft_n_max", "auto_restart_on_crash": "auto_restart"}
_SAME = ("n_gpu_layers", "ctx_size", "threads", "memory_limit", "parallel", "extra_args", *LIVE_DEFAULTS)
# Per-request figures upstream kept in `stats`; here they live in the request log.
_STATS_UNKNOWN = {"total_requests": None, "last_tokens_per_sec": None, "last_ttft_ms": None}


def upstream_fields(view: dict[str, Any], log_file: Path) -> dict[str, Any]:
    """The upstream-named fields of one instance, from its public view."""
    runtime = view.get("runtime") or {}
    docker = runtime.get("kind") == "docker"
    return {
        "config": _config(view),
        "container_id": runtime.get("handle") if docker and view.get("status") in ACTIVE else None,
        "container_name": runtime.get("name") if docker else None,
        "log_file": str(log_file),
        "stats": _stats(view),
    }


def _config(view: dict[str, Any]) -> dict[str, Any]:
    config = {key: view.get(key) for key in _SAME}
    config.update({old: view.get(new) for old, new in _RENAMED.items()})
    config["gpu_devices"] = view.get("gpu_devices") or None  # upstream: null for "all GPUs"
    return config


def _stats(view: dict[str, Any]) -> dict[str, Any]:
    kept = view.get("stats") if isinstance(view.get("stats"), dict) else {}  # an imported record's
    return {**_STATS_UNKNOWN, **kept, "crash_count": view.get("restarts", 0),
            "model_load_time_s": view.get("load_time_s")}
