"""Server-rendered pages, the health check, and the Ollama root on the API port."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, session

from llamaman import __version__
from llamaman.auth.guard import csrf_token
from llamaman.auth.session import on_proxy_port
from llamaman.http import services

bp = Blueprint("ui", __name__)


@bp.get("/health")
def health():
    return jsonify({"status": "ok"})


@bp.route("/", methods=["GET", "HEAD"])
def index():
    if on_proxy_port():
        return Response("Ollama is running", mimetype="text/plain")
    svc = services()
    return render_template("index.html", csrf=csrf_token(session), node=svc.config.node_name,
                           version=__version__)
