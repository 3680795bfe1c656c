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
