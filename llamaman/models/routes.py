"""Model library routes (/api/models, /api/model-layers, /api/disk-space, /api/models/delete)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from llamaman.instances.records import ACTIVE
from llamaman.webio import conditional, json_body, services

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
    """The block count of a model, for the '/ N' next to GPU Layers, with LlamaMan 1.2.1's
    header fields (block_count, embedding_length, head counts, ...) beside it."""
    library = services().library
    entry = library.lookup(request.args.get("path"))
    header = header_fields(library.metadata(entry["path"]).get("metadata") or {})
    return jsonify({**header, "path": entry["path"], "layers": entry["layers"], "quant": entry["quant"]})


@bp.get("/api/disk-space")
def disk_space() -> Response:
    """Total, used and free bytes of the models volume (and GiB, LlamaMan 1.2.1's `*_gb`)."""
    usage = services().library.disk_usage()
    return jsonify({**usage, **{f"{k}_gb": round(v / 1024**3, 1) for k, v in usage.items()}})


@bp.post("/api/models/delete")
def delete_model() -> Response:
    """Delete a model's files; refused while an active instance uses it."""
    body = json_body()
    svc = services()
    deleted = svc.library.delete(body.get("path"), busy=busy_paths(svc.instances.list()))
    return jsonify({**deleted, "status": "deleted"})  # status: LlamaMan 1.2.1's reply


_HEADER_KEYS = {"block_count": "block_count", "embedding_length": "embedding_length",
                "feed_forward_length": "feed_forward_length", "head_count": "attention.head_count",
                "head_count_kv": "attention.head_count_kv", "vocab_size": "vocab_size"}


def header_fields(metadata: dict) -> dict:
    """The architecture's size keys of a GGUF header, as integers or None."""
    arch = metadata.get("general.architecture")
    return {name: _int_or_none(metadata.get(f"{arch}.{key}")) if isinstance(arch, str) else None
            for name, key in _HEADER_KEYS.items()}


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def busy_paths(instances: list[dict]) -> list[str]:
    """Model paths of instances that hold their model open (starting, healthy, sleeping)."""
    return [path for record in instances if record.get("status") in ACTIVE
            for path in (record.get("model_path"), record.get("real_model_path")) if path]
