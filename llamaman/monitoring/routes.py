"""GET /api/gpu-info and GET /api/system-info: cached readings of the background monitor."""
from __future__ import annotations

from flask import Blueprint, jsonify

from llamaman.webio import services

bp = Blueprint("monitoring", __name__)


@bp.get("/api/gpu-info")
def gpu_info():
    # Query arguments are ignored, as LlamaMan does: browsers add cache-busters to polls.
    return jsonify(services().monitor.gpu_info())


@bp.get("/api/system-info")
def system_info():
    return jsonify(services().monitor.system_info())
