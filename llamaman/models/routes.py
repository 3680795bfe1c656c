"""Model library routes (/api/models, /api/model-layers, /api/disk-space, /api/models/delete)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from llamaman.http import conditional, json_body, services
from llamaman.instances.records import ACTIVE

bp = Blueprint("models", __name__)


@bp.get("/api/models")
def list_models() -> Response:
    """Every model under MODELS_DIR, from the index (encoded once per change)."""
    return conditional(Response(services().library.list_json(), mimetype="application/json"))


@bp.get("/api/models/metadata")
def model_metadata() -> Response:
    """All header metadata of one model, including its chat template."""
    return jsonify(services().library.metadata(request.args.get("path")))


@bp.get("/api/model-layers")
def model_layers() -> Response:
    """The block count of a model, for the '/ N' next to GPU Layers."""
    entry = services().library.lookup(request.args.get("path"))
    return jsonify({"path": entry["path"], "layers": entry["layers"]})


@bp.get("/api/disk-space")
def disk_space() -> Response:
    """Total, used and free bytes of the models volume."""
    return jsonify(services().library.disk_usage())


@bp.post("/api/models/delete")
def delete_model() -> Response:
    """Delete a model's files; refused while an active instance uses it."""
    body = json_body()
    svc = services()
    return jsonify(svc.library.delete(body.get("path"), busy=busy_paths(svc.instances.list())))


def busy_paths(instances: list[dict]) -> list[str]:
    """Model paths of instances that hold their model open (starting, healthy, sleeping)."""
    return [path for record in instances if record.get("status") in ACTIVE
            for path in (record.get("model_path"), record.get("real_model_path")) if path]
