"""Ollama- and OpenAI-compatible listing endpoints (on :42069 and :5000)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from llamaman import __version__
from llamaman.compat import catalog
from llamaman.webio import services

bp = Blueprint("compat", __name__)


@bp.get("/api/version")
def version():
    return jsonify({"version": __version__})


@bp.get("/api/tags")
def tags():
    return Response(services().library.view("ollama_tags", catalog.ollama_tags), mimetype="application/json")


@bp.get("/api/ps")
def running():
    svc = services()
    return jsonify(catalog.ollama_ps(svc.instances.list(), svc.library.list(), svc.instances.last_use()))


@bp.get("/v1/models")
def openai_models():
    return Response(services().library.view("openai_models", catalog.openai_models),
                    mimetype="application/json")
