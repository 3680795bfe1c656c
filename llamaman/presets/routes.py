"""Preset routes (/api/presets, /api/presets/<model_path>)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("presets", __name__)
