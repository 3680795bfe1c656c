"""Model backup: GET /api/models/export and POST /api/models/restore."""
from __future__ import annotations

from flask import Blueprint, jsonify

from llamaman.backup.service import BackupService
from llamaman.webio import json_body, services

bp = Blueprint("backup", __name__)


@bp.get("/api/models/export")
def export_models():
    """Every model with its preset and source, as a timestamped JSON download."""
    document = _backup().export()
    stamp = document["exported_at"].replace(":", "").replace("-", "")
    response = jsonify(document)
    response.headers["Content-Disposition"] = f'attachment; filename="llamaman-models-{stamp}.json"'
    return response


@bp.post("/api/models/restore")
def restore_models():
    """Merge presets of present models and queue downloads of missing ones with a source."""
    return jsonify(_backup().restore(json_body()))


def _backup() -> BackupService:
    svc = services()
    return BackupService(svc.library, svc.presets, svc.downloads,
                         svc.config.models_dir, svc.config.node_name)
