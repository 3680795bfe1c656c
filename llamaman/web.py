"""The Flask application factory."""
from __future__ import annotations

from pathlib import Path

from flask import Flask

from llamaman.auth import routes as auth_routes
from llamaman.auth.secret import load_or_create_secret
from llamaman.auth.session import init_auth
from llamaman.backup import routes as backup_routes
from llamaman.compat import embeddings as embedding_routes
from llamaman.compat import llamactl_instances as llamactl_instance_routes
from llamaman.compat import llamactl_models as llamactl_routes
from llamaman.compat import localai_monitor as monitor_routes
from llamaman.compat import ollama as ollama_routes
from llamaman.compat import ollama_models as ollama_model_routes
from llamaman.compat import openai as openai_routes
from llamaman.compat import routes as compat_routes
from llamaman.compat import solar as solar_routes
from llamaman.compat import solar_instances as solar_instance_routes
from llamaman.config import Config
from llamaman.downloads import routes as download_routes
from llamaman.instances import routes as instance_routes
from llamaman.models import routes as model_routes
from llamaman.monitoring import routes as monitoring_routes
from llamaman.presets import routes as preset_routes
from llamaman.recording import routes as recording_routes
from llamaman.runtime import image_routes
from llamaman.services import Services, build_services
from llamaman.settings import routes as settings_routes
from llamaman.ui import routes as ui_routes
from llamaman.webio import MAX_BODY_BYTES, register_error_handlers

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Config, services: Services | None = None) -> Flask:
    """Build the app serving :5000 and :42069; services are started separately."""
    services = services or build_services(config)
    app = Flask("llamaman", root_path=str(PROJECT_ROOT), template_folder="templates",
                static_folder="static")
    app.config.update(
        SECRET_KEY=load_or_create_secret(config.data_dir, config.secret_key),
        SESSION_COOKIE_NAME="llamaman_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
    )
    app.extensions["llamaman"] = services
    init_auth(app)
    register_error_handlers(app)
    for blueprint in (ui_routes.bp, auth_routes.bp, settings_routes.bp, instance_routes.bp,
                      monitor_routes.bp, model_routes.bp, preset_routes.bp, compat_routes.bp,
                      ollama_routes.bp, openai_routes.bp, ollama_model_routes.bp, embedding_routes.bp,
                      recording_routes.bp, backup_routes.bp, download_routes.bp, llamactl_routes.bp, image_routes.bp,
                      monitoring_routes.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(llamactl_instance_routes.bp)
    app.register_blueprint(solar_routes.bp)
    app.register_blueprint(solar_instance_routes.bp)
    return app
