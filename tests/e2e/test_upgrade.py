"""Upgrade path: data written by a version-1 llamaman (tests/fixtures/upgrade, made by its
generate.py) is migrated on start without loss, on the JSON, SQLite and MariaDB backends."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import MetaData, create_engine, func, inspect, select
from sqlalchemy.pool import NullPool

from llamaman.storage.sql_schema import LATEST, define_tables, migrate
from tests.dbkit import drop_all_tables
from tests.e2e.appproc import admin_session, start_app

pytestmark = pytest.mark.timeout(180)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upgrade"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
SQL_ROWS = json.loads((FIXTURES / "sql_v1.json").read_text())


def load_v1_database(url: str) -> None:
    """A schema-version-1 database holding the fixture's rows."""
    engine = create_engine(url, poolclass=NullPool)
    assert migrate(engine, target=1) == 0
    tables = define_tables(MetaData(), version=1).tables
    with engine.begin() as conn:
        for name, rows in SQL_ROWS.items():
            if rows:
                conn.execute(tables[name].insert(), rows)
    engine.dispose()


@pytest.fixture(params=["json", "sqlite", "mariadb"])
def upgraded(request, tmp_path, llama_server_bin, models_dir):
    """The app started on version-1 data; yields (app, manifest, database url or None)."""
    env = {"LLAMAMAN_RUNTIME": "process", "LLAMA_SERVER_BIN": llama_server_bin,
           "MODELS_DIR": str(models_dir), "PORT_RANGE_START": "23000", "PORT_RANGE_END": "23019",
           "INTERNAL_PORT_RANGE_START": "23100", "INTERNAL_PORT_RANGE_END": "23119"}
    url = None
    if request.param == "json":
        manifest = MANIFEST["json"]
        shutil.copytree(FIXTURES / "json", tmp_path / "data")
    else:
        manifest = MANIFEST["sql"]
        url = f"sqlite:///{tmp_path}/v1.db"
        if request.param == "mariadb":
            url = request.getfixturevalue("database_url")
            drop_all_tables(url)
        load_v1_database(url)
        env["DATABASE_URL"] = url
    app = start_app(tmp_path, LLAMAMAN_NODE_NAME=manifest["node"], **env)
    yield app, manifest, url
    app.kill()


def get(app, path: str, key: str, port: int | None = None) -> requests.Response:
    return requests.get(app.url(path, port), headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_version_1_data_is_migrated_without_loss(upgraded):
    app, manifest, url = upgraded
    assert requests.get(app.url("/setup"), timeout=10).url.endswith("/login"), "the admin is kept"
    api = admin_session(app, manifest["password"])

    assert get(app, "/api/tags", manifest["inference_key"], app.proxy_port).status_code == 200
    assert get(app, "/api/instances", manifest["inference_key"]).status_code == 403
    instances = get(app, "/api/instances", manifest["admin_key"])  # no stored scope: an admin key
    assert instances.status_code == 200
    assert [(i["id"], i["status"], i["model_path"]) for i in instances.json()] == [
        (manifest["instance_id"], "stopped", manifest["model_path"])]

    presets = api.get(app.url("/api/presets")).json()
    assert any(p.get("ctx_size") == 768 for p in _preset_values(presets)), presets
    assert api.get(app.url("/api/settings")).json()["request_recording_mode"] == "per_conversation"
    stats = api.get(app.url("/api/request-log/stats")).json()
    assert stats["turn_count"] == 1 and stats["completion_tokens"] > 0, stats

    instance_url = app.url(f"/api/instances/{manifest['instance_id']}")
    restarted = api.post(f"{instance_url}/restart")
    assert restarted.status_code in (200, 201, 202), restarted.text
    assert wait_status(api, instance_url, "healthy"), "the migrated record launches again"
    api.delete(instance_url).raise_for_status()
    if url:
        assert_schema_is_latest(url)


def wait_status(api: requests.Session, url: str, status: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.get(url, timeout=10).json().get("status") == status:
            return True
        time.sleep(0.2)
    return False


def _preset_values(presets) -> list[dict]:
    items = presets.values() if isinstance(presets, dict) else presets
    return [p.get("settings", p) if isinstance(p, dict) else {} for p in items]


def assert_schema_is_latest(url: str) -> None:
    """Migrated to the latest version; every version-1 row is still there."""
    engine = create_engine(url, poolclass=NullPool)
    md = MetaData()
    md.reflect(engine)
    with engine.connect() as conn:
        assert conn.scalar(select(func.max(md.tables["schema_version"].c.version))) == LATEST
        assert "setup_guard" in {c["name"] for c in inspect(conn).get_columns("users")}
        for name, rows in SQL_ROWS.items():
            assert conn.scalar(select(func.count()).select_from(md.tables[name])) >= len(rows), name
    engine.dispose()
