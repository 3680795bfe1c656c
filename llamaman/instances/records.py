"""Instance records: launch-body validation, model path checks, and the public view."""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaman.errors import Invalid
from llamaman.instances.execution import EXECUTION_DEFAULTS, parse_execution
from llamaman.runtime.launch_settings import LaunchSettings
from llamaman.validation import (
    get_bool,
    get_float,
    get_int,
    get_str,
    reject_unknown,
    require_object,
)

STARTING, HEALTHY, SLEEPING, STOPPED, FAILED = "starting", "healthy", "sleeping", "stopped", "failed"
ACTIVE = frozenset({STARTING, HEALTHY, SLEEPING})  # statuses that hold ports
LAUNCHERS = ("admin", "ollama", "openai")
GGUF_MAGIC = b"GGUF"

# Live options: applied without a relaunch (README "Presets (live apply)").
LIVE_DEFAULTS: dict[str, Any] = {
    "idle_timeout_min": 0,
    "max_concurrent": 0,
    "max_queue_depth": 200,
    "share_queue": False,
    "proxy_sampling_override_enabled": False,
    "proxy_sampling_temperature": 0.8,
    "proxy_sampling_top_k": 40,
    "proxy_sampling_top_p": 0.95,
    "proxy_sampling_presence_penalty": 0.0,
    "proxy_sampling_repeat_penalty": 0.0,
}
RESTART_DEFAULTS: dict[str, Any] = {"auto_restart": True, "max_restarts": 3, "restart_delay": 5.0}
SETTINGS_FIELDS = frozenset({"n_gpu_layers", "ctx_size", "parallel", "threads", "memory_limit",
                             "gpu_devices", "embedding", "spec_decoding", "draft_n_max", "extra_args"})
LAUNCH_FIELDS = SETTINGS_FIELDS | LIVE_DEFAULTS.keys() | RESTART_DEFAULTS.keys() | EXECUTION_DEFAULTS.keys() | {
    "model_path", "port", "name"}
PRIVATE_FIELDS = frozenset({"api_key", "node"})


@dataclass(frozen=True)
class LaunchRequest:
    """A validated launch body."""

    model_path: Path  # as the client named it, absolute, normalised
    real_model_path: Path  # symlinks resolved, strictly inside MODELS_DIR
    port: int | None
    name: str
    settings: LaunchSettings
    options: dict[str, Any]  # live + restart options
    execution: dict[str, Any]  # environment, command override, runtime kind, on-demand start


def parse_launch(body: Any, models_dir: Path) -> LaunchRequest:
    """Validate a launch body (README shape); raise Invalid naming the first bad field."""
    body = require_object(body)
    reject_unknown(body, LAUNCH_FIELDS)
    model_path, real = resolve_model_path(models_dir, body.get("model_path"))
    port = get_int(body, "port", low=1, high=65535)
    name = get_str(body, "name", max_len=64) or model_stem(model_path)
    settings = LaunchSettings.from_body({k: v for k, v in body.items() if k in SETTINGS_FIELDS})
    return LaunchRequest(model_path, real, port, name, settings, parse_options(body), parse_execution(body))


def parse_options(body: dict, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate the live and restart options present in body, over base (or the defaults)."""
    options = dict(base or {**LIVE_DEFAULTS, **RESTART_DEFAULTS})
    readers = {
        "idle_timeout_min": lambda k: get_float(body, k, low=0.0, high=525_600.0),
        "max_concurrent": lambda k: get_int(body, k, low=0, high=4096),
        "max_queue_depth": lambda k: get_int(body, k, low=0, high=100_000),
        "share_queue": lambda k: get_bool(body, k),
        "proxy_sampling_override_enabled": lambda k: get_bool(body, k),
        "proxy_sampling_temperature": lambda k: get_float(body, k, low=0.0, high=2.0),
        "proxy_sampling_top_k": lambda k: get_int(body, k, low=0, high=1_000_000),
        "proxy_sampling_top_p": lambda k: get_float(body, k, low=0.01, high=1.0),
        "proxy_sampling_presence_penalty": lambda k: get_float(body, k, low=-2.0, high=2.0),
        "proxy_sampling_repeat_penalty": lambda k: get_float(body, k, low=0.0, high=2.0),
        "auto_restart": lambda k: get_bool(body, k),
        "max_restarts": lambda k: get_int(body, k, low=0, high=100),
        "restart_delay": lambda k: get_float(body, k, low=0.0, high=3600.0),
    }
    for key, read in readers.items():
        value = read(key)
        if value is not None:
            options[key] = value
    return options


def resolve_model_path(models_dir: Path, raw: Any) -> tuple[Path, Path]:
    """Return (normalised path, real path) of a GGUF strictly inside MODELS_DIR."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw or len(raw) > 4096:
        raise Invalid("'model_path' must be the path of a GGUF file inside MODELS_DIR", field="model_path")
    root = Path(os.path.realpath(models_dir))
    given = Path(os.path.normpath(models_dir / raw if not os.path.isabs(raw) else raw))
    real = Path(os.path.realpath(given))
    if root not in real.parents:
        raise Invalid(f"'model_path' must be a file inside MODELS_DIR ({models_dir})", field="model_path")
    if not real.is_file():
        raise Invalid(f"model_path not found: {raw}", field="model_path")
    with open(real, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise Invalid(f"model_path is not a GGUF file: {raw}", field="model_path")
    return given, real


def model_stem(path: Path | str) -> str:
    """The model's name as clients use it: file name without extension, lowercased."""
    name = Path(path).name
    return (name[:-5] if name.lower().endswith(".gguf") else name).lower()


def new_record(request: LaunchRequest, *, node: str, port: int, internal_port: int,
               api_key: str, launched_by: str) -> dict[str, Any]:
    """A fresh record in status starting."""
    return {
        "id": uuid.uuid4().hex[:8],
        "name": request.name,
        "node": node,
        "model_path": str(request.model_path),
        "real_model_path": str(request.real_model_path),
        "model_name": model_stem(request.model_path),
        "port": port,
        "internal_port": internal_port,
        "api_key": api_key,
        "launched_by": launched_by,
        "status": STARTING,
        "settings": request.settings.to_body(),
        **request.options,
        **request.execution,
        "restarts": 0,
        "created_at": time.time(),
        "started_at": None,
        "healthy_at": None,
        "load_time_s": None,
        "stopped_at": None,
        "error": None,
        "runtime": None,
        "last_request_at": None,
    }


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """What the API shows: everything but the internal key; settings flattened as in the launch body."""
    view = {k: v for k, v in record.items() if k not in PRIVATE_FIELDS and k != "settings"}
    view.update(record.get("settings") or {})
    runtime = record.get("runtime") or {}
    view["runtime"] = {k: runtime.get(k) for k in ("kind", "name", "handle")} if runtime else None
    return view


def assigned_gpus(settings: dict[str, Any], default: tuple[int, ...] | None) -> list[int] | None:
    """GPU indices an instance is given: [] when CPU only (n_gpu_layers 0), None for all GPUs."""
    if settings.get("n_gpu_layers") == 0:
        return []
    devices = settings.get("gpu_devices")
    if devices:
        return [int(d) for d in str(devices).split(",")]
    return list(default) if default else None


def export_config(record: dict[str, Any]) -> dict[str, Any]:
    """A launch body that recreates this instance (llamactl-style export)."""
    body = {"model_path": record["model_path"], "name": record["name"], "port": record["port"],
            **(record.get("settings") or {})}
    body.update({k: record[k] for k in (*LIVE_DEFAULTS, *RESTART_DEFAULTS, *EXECUTION_DEFAULTS) if k in record})
    return body
