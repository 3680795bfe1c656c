"""GET/POST /api/settings and the HuggingFace token list."""
from __future__ import annotations

from flask import Blueprint, jsonify

from llamaman.settings.hf_tokens import HfTokens
from llamaman.webio import json_body, services

bp = Blueprint("settings", __name__)


@bp.get("/api/settings")
def get_settings():
    return jsonify(services().settings.get())


@bp.post("/api/settings")
def save_settings():
    settings = services().settings.save(json_body())
    return jsonify({**settings, "ok": True, "settings": settings})  # LlamaMan's reply shape too


@bp.get("/api/settings/huggingface-tokens")
def list_hf_tokens():
    return jsonify(_hf_tokens().list())


@bp.post("/api/settings/huggingface-tokens")
def add_hf_token():
    """Save a HuggingFace token ({"name", "token"}); answers its id and a preview."""
    return jsonify(_hf_tokens().add(json_body())), 201


@bp.delete("/api/settings/huggingface-tokens/<token_id>")
def delete_hf_token(token_id: str):
    _hf_tokens().delete(token_id)
    return jsonify({"ok": True})


def _hf_tokens() -> HfTokens:
    return HfTokens(services().settings.repo)
