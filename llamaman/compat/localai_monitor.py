"""LocalAI-compatible backend monitor and shutdown for instances, addressed by model name."""
from __future__ import annotations

import json

import psutil
from flask import Blueprint, jsonify, request

from llamaman.compat.localai_memory import instance_memory
from llamaman.errors import BackendError, Invalid, LlamamanError, UpstreamFailed
from llamaman.instances import records as rec
from llamaman.webio import services

bp = Blueprint("monitor", __name__)

UNINITIALIZED, BUSY, READY, ERROR = 0, 1, 2, -1
_STATE = {rec.STARTING: UNINITIALIZED, rec.SLEEPING: UNINITIALIZED, rec.STOPPED: UNINITIALIZED,
          rec.FAILED: ERROR}


@bp.route("/backend/monitor", methods=["GET", "POST"])
@bp.route("/v1/backend/monitor", methods=["GET", "POST"])
def backend_monitor():
    record = _find(_model_name())
    return jsonify(_monitor(record))


@bp.post("/backend/shutdown")
@bp.post("/v1/backend/shutdown")
def backend_shutdown():
    record = _find(_model_name())
    services().instances.stop(record["id"])
    return jsonify({"message": f"model '{record['model_name']}' shut down", "id": record["id"]})


def _model_name() -> str:
    body = request.get_json(silent=True) if request.data else {}
    model = (body or {}).get("model") if isinstance(body, dict) else None
    model = model or request.args.get("model")
    if not isinstance(model, str) or not model.strip():
        raise Invalid("'model' is required")
    return model.strip()


def _find(model: str) -> dict:
    """The instance serving a model name (stem, name:tag, instance name or id); active ones first."""
    wanted = model.lower().removesuffix(":latest")
    matches = [r for r in services().instances.registry.all()
               if wanted in (r["model_name"], r["name"].lower(), r["id"])]
    if not matches:
        raise Invalid(f"model '{model}' is not a known instance")
    matches.sort(key=lambda r: (r["status"] not in rec.ACTIVE, -r["created_at"]))
    return matches[0]


def _monitor(record: dict) -> dict:
    instances = services().instances
    try:
        stats = instances.stats(record["id"])
        state = _STATE.get(record["status"]) if record["status"] != rec.HEALTHY else _busy_state(record)
    except (LlamamanError, OSError, psutil.Error) as err:
        raise BackendError(f"backend error: {err}") from err
    used = stats["mem_used"] or 0
    parts, sources = {}, {}
    if record["status"] == rec.HEALTHY:
        parts, sources = instance_memory(record, instances.logs.path(record["id"]))
    if not parts:  # not loaded, or an unreadable model: the process as one entry
        parts, sources = {"llama-server": used}, {"llama-server": "process"}
    result = {"state": state, "memory": {"total": sum(parts.values()), "breakdown": parts, "sources": sources}}
    if stats["mem_used"] is not None:
        total = psutil.virtual_memory().total
        result.update(memory_info={"rss": used, "vms": None},
                      memory_percent=round(100.0 * used / total, 2),
                      cpu_percent=stats["cpu_percent"])
    return result


def _busy_state(record: dict) -> int:
    """BUSY when a llama-server slot is processing, READY otherwise."""
    target = services().instances.target(record["id"])
    try:
        response = services().upstream.open("GET", target.host, target.port, "/slots",
                                             {"Authorization": f"Bearer {target.api_key}"}, None)
        slots = json.loads(response.read()) if response.status == 200 else []
        response.release_conn()
    except (UpstreamFailed, ValueError):
        return READY
    return BUSY if any(isinstance(s, dict) and s.get("is_processing") for s in slots) else READY
