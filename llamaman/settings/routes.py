"""GET/POST /api/settings."""
from __future__ import annotations

from flask import Blueprint, jsonify

from llamaman.http import json_body, services

bp = Blueprint("settings", __name__)


@bp.get("/api/settings")
def get_settings():
    return jsonify(services().settings.get())


@bp.post("/api/settings")
def save_settings():
    return jsonify(services().settings.save(json_body()))
