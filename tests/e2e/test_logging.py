"""What the running app prints, started as users start it: one structured access line per
request, app log lines with a level, and never a key, password or Authorization header."""
from __future__ import annotations

import re

import pytest
import requests

from tests.e2e.appproc import admin_session, start_app

pytestmark = pytest.mark.timeout(120)
PASSWORD = "logging-password-1"
ACCESS = re.compile(
    r'^time="\[[^\]]+\]" remote=\S+ method=(?P<method>[A-Z]+) path="(?P<path>[^"?]*)" '
    r'status=(?P<status>\d{3}) bytes=\S+ duration_ms=\d+ ua="[^"]*"$'
)
APP_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")


@pytest.fixture
def app(tmp_path):
    app = start_app(tmp_path)
    yield app
    app.terminate()


def access_lines(log: str) -> list[re.Match]:
    return [m for m in map(ACCESS.match, log.splitlines()) if m]


def test_one_access_line_per_request_and_no_secrets(app):
    session = admin_session(app, PASSWORD)
    created = session.post(app.url("/api/api-keys"), json={"name": "log", "scope": "admin"})
    key = created.json()["key"]
    for _ in range(3):
        requests.get(app.url("/health"), timeout=5)
    bearer = requests.get(app.url("/api/instances"), headers={"Authorization": f"Bearer {key}"}, timeout=5)
    header = requests.get(app.url("/api/tags", app.proxy_port), headers={"X-API-Key": key}, timeout=5)
    query = requests.get(app.url(f"/api/settings?api_key={key}&token={key}"), timeout=5)
    assert (bearer.status_code, header.status_code, query.status_code) == (200, 200, 401)
    app.terminate()

    log = app.log()
    lines = access_lines(log)
    assert [m["path"] for m in lines].count("/health") >= 3  # start_app's own probes come on top
    hits = [(m["method"], m["path"], m["status"]) for m in lines]
    for expected in [("GET", "/api/instances", "200"), ("GET", "/api/tags", "200"),
                     ("GET", "/api/settings", "401"), ("POST", "/setup", "302")]:
        assert hits.count(expected) == 1, (expected, hits)
    for secret in (key, key.removeprefix("llm-"), PASSWORD):
        assert secret not in log
    assert "Bearer" not in log and "Authorization" not in log and "X-API-Key" not in log


def test_app_logs_carry_a_level(app):
    app.terminate()
    app_lines = [line for line in app.log().splitlines() if APP_LINE.match(line)]
    assert app_lines, app.log()
    assert any(" INFO " in line for line in app_lines)
