"""Model library routes (/api/models, /api/model-layers, /api/disk-space, /api/models/delete)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("models", __name__)
