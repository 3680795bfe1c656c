"""The app on MariaDB (DATABASE_URL): first-run setup, keys and instances survive a restart."""
import pytest
import requests

from tests.dbkit import drop_all_tables
from tests.e2e.appproc import admin_session, start_app

pytestmark = pytest.mark.timeout(120)


def test_app_on_mariadb_keeps_users_keys_and_settings(tmp_path, database_url):
    drop_all_tables(database_url)
    app = start_app(tmp_path, DATABASE_URL=database_url, LLAMAMAN_RUNTIME="process",
                    LLAMA_SERVER_BIN="/nonexistent")
    try:
        api = admin_session(app)
        key = api.post(app.url("/api/api-keys"), json={"name": "sql", "scope": "admin"}).json()["key"]
        api.post(app.url("/api/settings"), json={"require_auth": False}).raise_for_status()
    finally:
        app.terminate()
    assert not (tmp_path / "data" / "users.json").exists(), "SQL mode writes no JSON state"

    again = start_app(tmp_path, DATABASE_URL=database_url, LLAMAMAN_RUNTIME="process",
                      LLAMA_SERVER_BIN="/nonexistent")
    try:
        headers = {"Authorization": f"Bearer {key}"}
        assert requests.get(again.url("/api/settings"), headers=headers).json()["require_auth"] is False
        assert requests.get(again.url("/setup"), allow_redirects=False).headers["Location"] == "/login"
        assert admin_session(again).get(again.url("/api/api-keys")).json()[0]["name"] == "sql"
    finally:
        again.terminate()


def test_downloads_on_mariadb_complete_and_survive_a_restart(tmp_path, database_url, hub):
    from tests.hubkit import sha, wait_download
    from tests.modelkit import write_gguf

    drop_all_tables(database_url)
    data = write_gguf(tmp_path / "tiny-Q4_K_M.gguf").read_bytes()
    hub.add_repo("acme/tiny-GGUF", {"tiny-Q4_K_M.gguf": data})
    env = {"DATABASE_URL": database_url, "HF_ENDPOINT": hub.url, "MODELS_DIR": str(tmp_path / "models")}
    app = start_app(tmp_path, **env)
    try:
        api = admin_session(app)
        created = api.post(app.url("/api/downloads"), json={"repo_id": "acme/tiny-GGUF",
                                                            "filename": "tiny-Q4_K_M.gguf"})
        assert created.status_code == 201, created.text
        job = wait_download(api, created.json()["id"], base=app.url("").rstrip("/"))
        assert job["status"] == "completed", job
    finally:
        app.terminate()
    assert not (tmp_path / "data" / "state.json").exists(), "SQL mode writes no JSON state"
    landed = tmp_path / "models" / "acme" / "tiny-GGUF" / "tiny-Q4_K_M.gguf"
    assert sha(landed.read_bytes()) == sha(data)

    again = start_app(tmp_path, **env)
    try:
        [listed] = admin_session(again).get(again.url("/api/downloads")).json()
        assert (listed["id"], listed["status"], listed["repo_id"]) == (job["id"], "completed", "acme/tiny-GGUF")
    finally:
        again.terminate()
