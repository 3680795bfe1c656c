"""The app started as the README says: python app.py and gunicorn, on both ports."""
import json
import sys
import time

import psutil
import pytest
import requests

from tests.e2e.appproc import start_app

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def running(tmp_path):
    app = start_app(tmp_path)
    yield app
    app.kill()


def test_python_app_py_serves_both_ports(running):
    for port in (running.ui_port, running.proxy_port):
        assert requests.get(running.url("/health", port)).json() == {"status": "ok"}
        setup = requests.get(running.url("/setup", port))
        assert setup.status_code == 200 and 'name="csrf_token"' in setup.text
        assert requests.get(running.url("/login", port), allow_redirects=False).headers["Location"] == "/setup"
    root = requests.get(running.url("/", running.proxy_port))
    assert root.text == "Ollama is running" and root.headers["Content-Type"].startswith("text/plain")
    assert requests.head(running.url("/", running.proxy_port)).status_code == 200
    assert requests.get(running.url("/"), allow_redirects=False).headers["Location"] == "/setup"


def test_one_worker_runs_the_services_and_sigterm_stops_them(running):
    nodes = running.data_dir / "nodes.json"
    deadline = time.monotonic() + 10
    while not nodes.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    master = psutil.Process(running.proc.pid)
    workers = master.children()
    assert len(workers) == 1, "gunicorn must run exactly one worker"
    record = _node_record(nodes, running.env["LLAMAMAN_NODE_NAME"])
    assert record["status"] == "online" and record["pid"] == workers[0].pid != master.pid
    assert running.terminate() == 0
    assert _node_record(nodes, running.env["LLAMAMAN_NODE_NAME"])["status"] == "stopped"


def _node_record(path, node):
    document = json.loads(path.read_text())
    records = [r for r in _walk_records(document) if r.get("name") == node]
    assert len(records) == 1, document
    return records[0]


def _walk_records(value):
    if isinstance(value, dict):
        if "name" in value and "status" in value:
            yield value
        for child in value.values():
            yield from _walk_records(child)


def test_gunicorn_command_serves_both_ports(tmp_path):
    app = start_app(tmp_path, argv=[sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"])
    try:
        for port in (app.ui_port, app.proxy_port):
            assert requests.get(app.url("/health", port)).json() == {"status": "ok"}
        assert app.terminate() == 0
    finally:
        app.kill()


@pytest.mark.parametrize("env, expected", [
    ({"LLAMAMAN_NODE_NAME": ""}, "LLAMAMAN_NODE_NAME"),
    ({"PORT_RANGE_START": "abc"}, "PORT_RANGE_START: expected an integer"),
    ({"PORT_RANGE_START": "8100"}, "PORT_RANGE_END"),
    ({"INTERNAL_PORT_RANGE_START": "8010"}, "INTERNAL_PORT_RANGE_START"),
])
@pytest.mark.parametrize("command", ["python", "gunicorn"])
def test_bad_configuration_exits_78_with_one_line(tmp_path, env, expected, command):
    argv = [sys.executable, "app.py"] if command == "python" else [
        sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"]
    app = start_app(tmp_path, argv=argv, wait=False, **env)
    assert app.proc.wait(30) == 78
    lines = [line for line in app.log().splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], lines
