"""Preset routes (/api/presets, /api/presets/<model_path>).

The model path in the URL may be absolute: "/api/presets//models/x.gguf" (or "%2F"-encoded)
reaches the view with its leading slash, and "/api/presets/models/x.gguf" without it.
"""
from __future__ import annotations

from flask import Blueprint, jsonify
from werkzeug.routing import PathConverter

from llamaman.webio import json_body, services

bp = Blueprint("presets", __name__)
MODEL_URL = "/api/presets/<model_path:model_path>"


class ModelPathConverter(PathConverter):
    """Like the path converter, but keeps a leading slash."""

    regex = ".+?"
    part_isolating = False  # may span (and begin with) slashes


bp.record_once(lambda state: state.app.url_map.converters.setdefault("model_path", ModelPathConverter))


def _presets():
    return services().presets


@bp.get("/api/presets")
def list_presets():
    """Every preset keyed by its model path (LlamaMan 1.2.1's shape); each keeps model_path."""
    return jsonify({p["model_path"]: p for p in _presets().list()})


@bp.get(MODEL_URL, merge_slashes=False)
def get_preset(model_path: str):
    return jsonify(_presets().get(model_path))


@bp.put(MODEL_URL, merge_slashes=False)
def save_preset(model_path: str):
    return jsonify({**_presets().save(model_path, json_body()), "status": "saved"})  # LlamaMan's reply too


@bp.delete(MODEL_URL, merge_slashes=False)
def delete_preset(model_path: str):
    _presets().delete(model_path)
    return jsonify({"ok": True, "status": "deleted"})
