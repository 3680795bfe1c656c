"""llamactl's instance JSON (seed 000) ↔ llamaman launch bodies and instance views."""
from __future__ import annotations

import re
import shlex
from typing import Any

from llamaman.errors import Invalid
from llamaman.validation import require_object

NAME = re.compile(r"^[A-Za-z0-9_-]{1,50}$")
BACKEND = "llama_cpp"
TOP_FIELDS = frozenset({"backend_type", "backend_options", "auto_restart", "max_restarts",
                        "restart_delay", "on_demand_start", "idle_timeout", "docker_enabled",
                        "command_override", "environment", "nodes"})
PASSED = ("auto_restart", "max_restarts", "restart_delay", "on_demand_start", "command_override",
          "environment")
# backend_options keys that are launch-body fields; any other key becomes a llama-server flag.
OPTION_FIELDS = {"model": "model_path", "threads": "threads", "ctx_size": "ctx_size",
                 "context_size": "ctx_size", "gpu_layers": "n_gpu_layers", "n_gpu_layers": "n_gpu_layers",
                 "parallel": "parallel", "embedding": "embedding", "embeddings": "embedding"}
STATUS = {"healthy": "running", "starting": "running", "sleeping": "stopped", "stopped": "stopped",
          "failed": "failed"}
HEALTH = {"healthy": "ready", "starting": "unknown", "sleeping": "stopped", "stopped": "stopped",
          "failed": "failed"}


def check_name(name: str) -> str:
    """llamactl's rule: 1-50 letters, digits, '-' or '_'."""
    if not NAME.match(name):
        raise Invalid("instance name must be 1-50 characters: letters, digits, '-' or '_'", field="name")
    return name


def launch_body(raw: Any, node: str, *, create: bool) -> dict[str, Any]:
    """A llamactl create/update body as a llamaman launch body (only the fields it sets)."""
    raw = require_object(raw)
    unknown = sorted(set(raw) - TOP_FIELDS)
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)}", fields=unknown)
    backend = raw.get("backend_type", BACKEND)
    if backend != BACKEND:
        raise Invalid(f"backend_type '{backend}' is not supported: llamaman runs llama.cpp only "
                      f"(use \"{BACKEND}\")", field="backend_type")
    _check_nodes(raw.get("nodes"), node)
    body = {key: raw[key] for key in PASSED if key in raw}
    if "idle_timeout" in raw:
        body["idle_timeout_min"] = raw["idle_timeout"]
    if "docker_enabled" in raw:
        body["runtime_kind"] = _runtime_kind(raw["docker_enabled"])
    body.update(backend_fields(raw.get("backend_options"), create=create))
    return body


def backend_fields(raw: Any, *, create: bool) -> dict[str, Any]:
    """backend_options as launch-body fields; unknown options become llama-server flags."""
    if raw is None and not create:
        return {}
    options = require_object(raw) if raw is not None else {}
    if create and not options.get("model"):
        raise Invalid("backend_options.model (the GGUF path) is required", field="backend_options.model")
    body: dict[str, Any] = {}
    flags: list[str] = []
    for key, value in options.items():
        if key in OPTION_FIELDS:
            body[OPTION_FIELDS[key]] = value
        else:
            flags += _flag(key, value)
    if flags:
        body["extra_args"] = shlex.join(flags)
    return body


def instance_view(instance: dict[str, Any], node: str) -> dict[str, Any]:
    """An instance as llamactl shows it (plus llamaman's id, port and raw status)."""
    kind = instance.get("runtime_kind")
    backend = {"model": instance["model_path"], "threads": instance.get("threads"),
               "ctx_size": instance.get("ctx_size"), "gpu_layers": instance.get("n_gpu_layers"),
               "parallel": instance.get("parallel"), "embedding": instance.get("embedding")}
    if instance.get("extra_args"):
        backend["extra_args"] = instance["extra_args"]
    return {
        "name": instance["name"],
        "status": STATUS.get(instance["status"], instance["status"]),
        "health": HEALTH.get(instance["status"], "unknown"),
        "created": int(instance["created_at"]),
        "id": instance["id"],
        "port": instance["port"],
        "llamaman_status": instance["status"],
        "error": instance.get("error"),
        "options": {
            "backend_type": BACKEND,
            "backend_options": backend,
            "auto_restart": instance.get("auto_restart"),
            "max_restarts": instance.get("max_restarts"),
            "restart_delay": instance.get("restart_delay"),
            "on_demand_start": bool(instance.get("on_demand_start")),
            "idle_timeout": instance.get("idle_timeout_min"),
            "docker_enabled": None if kind is None else kind == "docker",
            "command_override": instance.get("command_override"),
            "environment": instance.get("environment") or {},
            "nodes": [node],
        },
    }


def renamed_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Changed llamaman fields under llamactl's names where they differ."""
    names = {"model_path": "model", "idle_timeout_min": "idle_timeout", "runtime_kind": "docker_enabled",
             "n_gpu_layers": "gpu_layers"}
    return {names.get(key, key): value for key, value in changes.items()}


def _flag(key: str, value: Any) -> list[str]:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", key):
        raise Invalid(f"backend_options: {key!r} is not an option name", field="backend_options")
    flag = "--" + key.replace("_", "-")
    if value is True:
        return [flag]
    if value is False or value is None:
        return []
    if isinstance(value, str | int | float):
        return [flag, str(value)]
    raise Invalid(f"backend_options.{key}: use a string, number or boolean", field="backend_options")


def _check_nodes(nodes: Any, node: str) -> None:
    if nodes is None:
        return
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise Invalid("'nodes' must be a list of node names", field="nodes")
    others = [n for n in nodes if n != node]
    if others:
        raise Invalid(f"this node is '{node}': create instances for {', '.join(others)} on those nodes",
                      field="nodes")


def _runtime_kind(enabled: Any) -> str | None:
    if enabled is None:
        return None
    if not isinstance(enabled, bool):
        raise Invalid("'docker_enabled' must be true, false or null (the global runtime)",
                      field="docker_enabled")
    return "docker" if enabled else "process"
