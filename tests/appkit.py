"""Builders for app-level tests: a configured app over a temp data dir, and a logged-in client."""
from __future__ import annotations

import re
from pathlib import Path

from llamaman.config import Config
from llamaman.web import create_app

ADMIN = {"username": "admin", "password": "correct horse battery"}


def make_config(tmp_path: Path, **env: str) -> Config:
    """A Config whose directories live under tmp_path."""
    base = {
        "LLAMAMAN_NODE_NAME": "test-node",
        "DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(tmp_path / "models"),
    }
    return Config.from_env({**base, **env})


def make_app(tmp_path: Path, **env: str):
    """A started app (JSON storage unless DATABASE_URL is given)."""
    app = create_app(make_config(tmp_path, **env))
    app.extensions["llamaman"].start()
    return app


def csrf_of(client, page: str = "/login") -> str:
    """The CSRF token embedded in a rendered page."""
    html = client.get(page).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html)
    assert match, f"no CSRF token on {page}"
    return match.group(1)


def setup_admin(client, creds: dict = ADMIN) -> str:
    """Run first-run setup through the form; returns the session's CSRF token."""
    token = csrf_of(client, "/setup")
    response = client.post("/setup", data={**creds, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return token


def create_key(client, token: str, scope: str = "inference", name: str = "k") -> dict:
    response = client.post("/api/api-keys", json={"name": name, "scope": scope},
                           headers={"X-CSRF-Token": token})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()
