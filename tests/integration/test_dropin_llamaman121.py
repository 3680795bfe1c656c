"""Starting on a LlamaMan 1.2.1 install: its JSON DATA_DIR and its MariaDB database.

The fixture was written by a real LlamaMan 1.2.1 (/work/shared/fixtures/llamaman-1.2.1). Each
test copies it, points its /models and /tmp/llama-logs paths at temp dirs, writes the model
files it names, starts our app on it and checks, through the API and a real form login, that
everything it held is there; then that the backup is upstream's data byte for byte, that the
README's rollback gives upstream's data back, and that a second start imports nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from llamaman.dropin.records import UpstreamRecords
from llamaman.errors import StorageError
from llamaman.storage import open_storage
from tests.appkit import csrf_of, make_app
from tests.conftest import require
from tests.modelkit import write_gguf

REPO = Path(__file__).resolve().parents[2]


def fixtures_dir() -> Path:
    """LLAMAMAN_FIXTURES, else the project's shared/ beside this checkout (CI clones elsewhere and
    puts a copy of shared/ beside the clone), else the developers' /work/shared."""
    if os.environ.get("LLAMAMAN_FIXTURES"):
        return Path(os.environ["LLAMAMAN_FIXTURES"])
    beside = REPO.parent / "shared" / "fixtures"
    return beside if beside.exists() else Path("/work/shared/fixtures")


FIXTURE = fixtures_dir() / "llamaman-1.2.1"
CREDS = json.loads((FIXTURE / "credentials.json").read_text()) if FIXTURE.exists() else {}
TINY = "tiny-llama-Q4_K_M.gguf"
UPSTREAM_TABLES = ("instances", "downloads", "presets", "users", "api_keys", "settings",
                   "request_log", "cluster_nodes")
OUR_TABLES = ("instances", "downloads", "presets", "users", "api_keys", "settings",
              "request_log", "nodes", "schema_version")


@pytest.fixture(autouse=True)
def _fixture_present():
    if not FIXTURE.exists():
        require("the LlamaMan 1.2.1 fixture", f"{FIXTURE} is missing (set LLAMAMAN_FIXTURES)")


def relocate(text_: str, tmp: Path) -> str:
    """Upstream's paths (/models, /tmp/llama-logs) moved under tmp, as the fixture README says."""
    return text_.replace("/tmp/llama-logs/", f"{tmp}/logs/").replace("/models/", f"{tmp}/models/")


def make_models(tmp: Path) -> None:
    write_gguf(tmp / "models" / TINY)
    write_gguf(tmp / "models" / "some-model-GGUF" / "some-model-Q4_K_M.gguf")
    (tmp / "logs").mkdir(exist_ok=True)


def copy_json_fixture(tmp: Path) -> Path:
    data = tmp / "data"
    for src in (FIXTURE / "json-data-dir").rglob("*"):
        if src.is_file():
            dest = data / src.relative_to(FIXTURE / "json-data-dir")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(relocate(src.read_text(), tmp))
    return data


def snapshot(directory: Path) -> dict[str, str]:
    """sha256 of every file under directory, by relative path."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def start(tmp: Path, **env: str):
    return make_app(tmp, LLAMAMAN_NODE_NAME="srv1", DATA_DIR=str(tmp / "data"),
                    MODELS_DIR=str(tmp / "models"), LOGS_DIR=str(tmp / "logs"), **env)


def login(client, password: str) -> dict:
    """The real form login; returns the CSRF header for the session's writes."""
    token = csrf_of(client, "/login")
    response = client.post("/login", data={"username": "admin", "password": password,
                                           "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return {"X-CSRF-Token": token}


# --- the checks every backend must pass ---------------------------------------------------

def check_everything(app, tmp: Path, creds: dict) -> None:
    client = app.test_client()
    check_keys(app, creds)
    headers = login(client, creds["admin"]["password"])
    check_key_list(client, creds)
    check_instances_and_downloads(client, creds)
    check_presets(client, tmp, headers)
    check_settings(app, client, headers, creds)
    check_model_source(client)
    check_request_log(client)


def check_keys(app, creds: dict) -> None:
    """Both raw keys authenticate as admin keys (an admin-only route answers them)."""
    client = app.test_client()
    assert client.get("/api/settings").status_code in (401, 302)
    for key in creds["api_keys"].values():
        response = client.get("/api/settings", headers={"Authorization": f"Bearer {key['key']}"})
        assert response.status_code == 200, response.get_data(as_text=True)
    bad = client.get("/api/settings", headers={"Authorization": "Bearer llm-not-a-key"})
    assert bad.status_code == 401


def check_key_list(client, creds: dict) -> None:
    listed = {k["id"]: k for k in client.get("/api/api-keys").get_json()}
    for key in creds["api_keys"].values():
        assert listed[key["id"]]["scope"] == "admin" and listed[key["id"]]["name"] == key["name"]


def check_instances_and_downloads(client, creds: dict) -> None:
    instances = {i["id"]: i for i in client.get("/api/instances").get_json()}
    inst = instances["inst0001"]
    assert inst["status"] == "stopped" and inst["model_path"].endswith(TINY)
    assert inst["n_gpu_layers"] == 12 and inst["ctx_size"] == 8192 and inst["stats"]["total_requests"] == 3
    downloads = client.get("/api/downloads").get_json()
    jobs = downloads if isinstance(downloads, list) else downloads["downloads"]
    [job] = [j for j in jobs if j["repo_id"] == "someorg/some-model-GGUF"]
    assert job["status"] == "failed"
    assert job["hf_token_id"] == creds["hf_token"]["id"]
    assert job["per_model_speed_limit_mbps"] == 10.0 and job["retry_attempts"] == 5


def check_presets(client, tmp: Path, headers: dict) -> None:
    response = client.get("/api/presets")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    presets = body if isinstance(body, list) else list(body.values()) if "presets" not in body else body["presets"]
    [preset] = [p for p in presets if p["model_path"] == str(tmp / "models" / TINY)]
    assert preset["favorite"] is True and preset["note"] == "my note"
    assert preset["spec_decoding"] is False and preset["embedding"] is False
    assert preset["auto_restart"] is False and preset["ctx_size"] == 8192
    assert preset["proxy_sampling_temperature"] == 0.6 and preset["extra_args"] == "--flash-attn on"
    launched = client.post("/api/instances", json={"model_path": str(tmp / "models" / TINY)},
                           headers=headers)
    assert launched.status_code == 201, launched.get_data(as_text=True)
    assert launched.get_json()["ctx_size"] == 8192 and launched.get_json()["auto_restart"] is False
    client.delete(f"/api/instances/{launched.get_json()['id']}", headers=headers)


def check_settings(app, client, headers: dict, creds: dict) -> None:
    got = client.get("/api/settings").get_json()
    expected = {"require_auth": False, "request_recording_mode": "per_conversation",
                "recording_mode": "per_conversation", "request_recording_retention_days": 14,
                "recording_retention_days": 14, "download_speed_limit_mbps": 25.5,
                "global_speed_limit_mbps": 25.5, "admin_ui_enforce_max_models": True,
                "allow_ollama_api_override_admin": True, "cluster_hide_offline_monitoring": True,
                "_schema_version": 3, "auto_retry_failed_downloads": True,
                "retry_count_per_failed_download": 5}
    assert {k: got.get(k) for k in expected} == expected
    assert got["cleanup"]["downloads_max_age_hours"] == 12 and got["cleanup"]["instances_enabled"] is True
    assert [t["id"] for t in got["huggingface_tokens"]] == [creds["hf_token"]["id"]]
    assert "hf_abcdefghijklmnopqrstuvwxyz0123" not in json.dumps(got)
    assert app.extensions["llamaman"].settings.hf_token() == "hf_abcdefghijklmnopqrstuvwxyz0123"
    # GET echoed into POST changes nothing; the reply carries LlamaMan's ok/settings too.
    echoed = client.post("/api/settings", json=got, headers=headers)
    assert echoed.status_code == 200, echoed.get_data(as_text=True)
    assert echoed.get_json()["ok"] is True and echoed.get_json()["settings"] == got
    assert client.get("/api/settings").get_json() == got
    # upstream's keys and numeric strings are accepted; a bad value changes nothing.
    saved = client.post("/api/settings", json={"recording_retention_days": "30",
                                               "global_speed_limit_mbps": "12.5"}, headers=headers)
    assert saved.status_code == 200, saved.get_data(as_text=True)
    after = saved.get_json()["settings"]
    assert after["request_recording_retention_days"] == after["recording_retention_days"] == 30
    assert after["download_speed_limit_mbps"] == after["global_speed_limit_mbps"] == 12.5
    bad = client.post("/api/settings", json={"recording_retention_days": "many"}, headers=headers)
    assert bad.status_code == 400
    assert client.get("/api/settings").get_json() == after


def check_model_source(client) -> None:
    models = client.get("/api/models").get_json()
    entries = models if isinstance(models, list) else models["models"]
    repo_ids = {m.get("repo_id") for m in entries if "some-model" in json.dumps(m)}
    assert repo_ids == {"someorg/some-model-GGUF"}


def check_request_log(client) -> None:
    conversation = "973b44cf9ec1b6a2feb464144e259ba8"
    response = client.get(f"/api/request-log/conversations/{conversation}")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(response.get_json()["turns"]) == 2
    listed = client.get("/api/request-log/conversations?hours=0").get_json()
    assert conversation in json.dumps(listed)
    stats = client.get("/api/request-log/stats?hours=0").get_json()
    assert "2" in json.dumps(stats) and stats["recording_mode"] == "per_conversation"


# --- JSON backend ---------------------------------------------------------------------------

def test_json_data_dir_of_llamaman_121(tmp_path):
    make_models(tmp_path)
    data = copy_json_fixture(tmp_path)
    before = snapshot(data)
    app = start(tmp_path)
    try:
        check_everything(app, tmp_path, CREDS["json-data-dir"])
    finally:
        app.extensions["llamaman"].stop()
    [backup] = list(data.glob("backup-llamaman-1.2.1-*"))
    assert {k: v for k, v in snapshot(backup).items() if k != ".complete"} == {
        k: v for k, v in before.items() if not k.startswith("request_log/")}
    assert json.loads((data / "users.json").read_text()) != json.loads(
        (backup / "users.json").read_text())  # the live files are in our form now

    converted = snapshot(data)
    app = start(tmp_path)  # a second start imports nothing and keeps one backup
    try:
        login(app.test_client(), CREDS["json-data-dir"]["admin"]["password"])
    finally:
        app.extensions["llamaman"].stop()
    assert list(data.glob("backup-llamaman-1.2.1-*")) == [backup]
    for name in ("users.json", "api_keys.json", "presets.json"):
        assert snapshot(data)[name] == converted[name]

    # The README's rollback: copy the backup's files back over DATA_DIR.
    for file in backup.glob("*.json"):
        shutil.copy2(file, data / file.name)
    restored = snapshot(data)
    assert {k: restored[k] for k in before} == before


def test_storage_opened_without_the_dropin_records_refuses_upstream_files(tmp_path):
    """Storage alone cannot convert LlamaMan's presets and instances: it refuses, changing nothing."""
    data = copy_json_fixture(tmp_path)
    before = snapshot(data)
    storage = open_storage(node="srv1", data_dir=data)
    with pytest.raises(StorageError, match="LlamaMan 1.2.1 files"):
        storage.open()
    assert snapshot(data) == before
    assert list(data.glob("backup-llamaman-1.2.1-*")) == []


def test_json_import_resumes_after_a_crash(tmp_path):
    """A crash after the backup and some conversions: the next start finishes, one backup."""
    from llamaman.storage import upstream_json

    make_models(tmp_path)
    data = copy_json_fixture(tmp_path)
    before = snapshot(data)
    backup = upstream_json.make_backup(data)
    upstream_json.CONVERTERS["users.json"](data, "srv1", UpstreamRecords())
    assert upstream_json.pending(data) == ["state.json", "api_keys.json", "presets.json", "settings.json"]
    app = start(tmp_path)
    try:
        login(app.test_client(), CREDS["json-data-dir"]["admin"]["password"])
        assert len(app.test_client().get("/api/instances").get_json()) == 1
    finally:
        app.extensions["llamaman"].stop()
    assert upstream_json.pending(data) == []
    assert list(data.glob("backup-llamaman-1.2.1-*")) == [backup]
    assert snapshot(backup)["users.json"] == before["users.json"]


# --- MariaDB ----------------------------------------------------------------------------------

def _root_sql(sql: str, database: str | None = None, stdin: str | None = None) -> str:
    argv = ["mariadb", "-uroot", "-N", "-B", *([database] if database else []), "-e", sql] if sql else \
        ["mariadb", "-uroot", database]
    done = subprocess.run(argv, check=False, input=stdin, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout


@pytest.fixture
def upstream_db(tmp_path, database_url):
    """A fresh database (created as root over the local socket) holding the relocated dump."""
    if shutil.which("mariadb") is None:
        require("mariadb client", "install the mariadb client")
    name = f"llamaman_dropin_{uuid.uuid4().hex[:10]}"
    url = make_url(database_url)
    try:
        _root_sql(f"CREATE DATABASE `{name}`; GRANT ALL ON `{name}`.* TO "
                  f"'{url.username}'@'{url.host}'")
    except (RuntimeError, OSError) as err:
        require("MariaDB root access over the local socket", str(err))
    _root_sql("", name, stdin=relocate((FIXTURE / "mariadb" / "dump.sql").read_text(), tmp_path))
    yield url.set(database=name).render_as_string(hide_password=False)
    _root_sql(f"DROP DATABASE `{name}`")


def checksums(url: str, prefix: str = "") -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        sums = {t: conn.execute(text(f"CHECKSUM TABLE `{prefix}{t}` EXTENDED")).first()[1]
                for t in UPSTREAM_TABLES}
    engine.dispose()
    return sums


def tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names


def test_mariadb_of_llamaman_121(tmp_path, upstream_db):
    make_models(tmp_path)
    (tmp_path / "data").mkdir()
    before = checksums(upstream_db)
    app = start(tmp_path, DATABASE_URL=upstream_db)
    try:
        check_everything(app, tmp_path, CREDS["mariadb"])
    finally:
        app.extensions["llamaman"].stop()
    assert checksums(upstream_db, "llamaman121_") == before  # upstream's rows, untouched
    assert set(OUR_TABLES) | {f"llamaman121_{t}" for t in UPSTREAM_TABLES} == tables(upstream_db)

    app = start(tmp_path, DATABASE_URL=upstream_db)  # a second start imports nothing
    try:
        login(app.test_client(), CREDS["mariadb"]["admin"]["password"])
    finally:
        app.extensions["llamaman"].stop()
    assert checksums(upstream_db, "llamaman121_") == before
    assert not any(t.startswith("llamaman_import_") for t in tables(upstream_db))

    # The README's rollback: drop our tables, rename upstream's back.
    engine = create_engine(upstream_db, poolclass=NullPool)
    with engine.connect() as conn:
        conn.execute(text("DROP TABLE " + ", ".join(f"`{t}`" for t in OUR_TABLES)))
        conn.execute(text("RENAME TABLE " + ", ".join(
            f"`llamaman121_{t}` TO `{t}`" for t in UPSTREAM_TABLES)))
    engine.dispose()
    assert tables(upstream_db) == set(UPSTREAM_TABLES)
    assert checksums(upstream_db) == before


def test_mariadb_import_failure_touches_nothing(tmp_path, upstream_db, monkeypatch):
    """A crash while copying rows leaves upstream's tables as they were; the next start imports."""
    from llamaman.storage import upstream, upstream_sql

    make_models(tmp_path)
    before = checksums(upstream_db)

    def crash(*_args):
        raise RuntimeError("simulated crash during the import")

    monkeypatch.setattr(upstream, "api_key", crash)
    with pytest.raises(Exception, match="simulated crash"):
        start(tmp_path, DATABASE_URL=upstream_db)
    assert checksums(upstream_db) == before
    assert "schema_version" not in tables(upstream_db)
    monkeypatch.undo()
    engine = create_engine(upstream_db, poolclass=NullPool)
    assert upstream_sql.import_upstream(engine, "srv1", UpstreamRecords()) is True
    engine.dispose()
    assert checksums(upstream_db, "llamaman121_") == before
