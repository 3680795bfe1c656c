"""Server-rendered pages, the health check, and the Ollama root on the API port.

Pages are shells: their scripts read and change everything through the REST API, so the UI
adds no route that bypasses the API's validation or auth.
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, session

from llamaman import __version__
from llamaman.auth.guard import csrf_token
from llamaman.auth.session import on_proxy_port
from llamaman.webio import services

bp = Blueprint("ui", __name__)


def render_page(template: str):
    return render_template(template, csrf=csrf_token(session), node=services().config.node_name,
                           version=__version__)


@bp.get("/health")
def health():
    return jsonify({"status": "ok"})


@bp.route("/", methods=["GET", "HEAD"])
def index():
    if on_proxy_port():
        return Response("Ollama is running", mimetype="text/plain")
    return render_page("dashboard.html")


@bp.get("/logging")
def logging_page():
    return render_page("logging.html")


@bp.get("/settings")
def settings_page():
    return render_page("settings.html")
