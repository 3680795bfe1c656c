"""Start the app the way users do (python app.py / gunicorn) on free loopback ports."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.helpers import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class AppProcess:
    proc: subprocess.Popen
    ui_port: int
    proxy_port: int
    data_dir: Path
    log_path: Path
    env: dict = field(default_factory=dict)

    def url(self, path: str = "/", port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.ui_port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


_RANGES = (("PORT_RANGE_START", "PORT_RANGE_END", 8000, 8020),
           ("INTERNAL_PORT_RANGE_START", "INTERNAL_PORT_RANGE_END", 9000, 9020))


def port_outside_ranges(env: dict) -> int:
    """A free port for the UI or API that no instance port range of env covers (the config refuses
    an overlap, and a random free port can land inside a test's fixed range)."""
    ranges = []
    for lo, hi, default_lo, default_hi in _RANGES:
        try:
            ranges.append(range(int(env.get(lo, default_lo)), int(env.get(hi, default_hi)) + 1))
        except ValueError:
            continue  # a test of bad configuration: the app itself must refuse that value
    while True:
        port = free_port()
        if not any(port in r for r in ranges):
            return port


def app_env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMAMAN_", "GUNICORN"))}
    env.update({
        # one node per data dir: apps of parallel test sessions never adopt or remove each other's servers
        "LLAMAMAN_NODE_NAME": "e2e-" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:12],
        "LLAMAMAN_BIND": "127.0.0.1",
        "DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(tmp_path / "models"),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    env.setdefault("LLAMAMAN_UI_PORT", str(port_outside_ranges(env)))
    env.setdefault("LLAMAMAN_PROXY_PORT", str(port_outside_ranges(env)))
    return env


def start_app(tmp_path: Path, argv: list[str] | None = None, wait: bool = True, **extra: str) -> AppProcess:
    """Run the app from the repository root with the given command (default: python app.py)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = app_env(tmp_path, **extra)
    log_path = tmp_path / f"app-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv or [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    app = AppProcess(proc, int(env["LLAMAMAN_UI_PORT"]), int(env["LLAMAMAN_PROXY_PORT"]),
                     Path(env["DATA_DIR"]), log_path, env)
    if wait:
        try:
            wait_http(app.url("/health"), timeout=30)
            wait_http(app.url("/health", app.proxy_port), timeout=30)
        except TimeoutError:
            app.kill()
            raise AssertionError("app did not start:\n" + app.log())
    return app


def admin_session(app: AppProcess, password: str = "e2e-password-1") -> requests.Session:
    """A requests session logged in as the admin (setup on first use), sending its CSRF token."""
    session = requests.Session()
    page = session.get(app.url("/setup"))
    path = "/setup" if page.url.endswith("/setup") else "/login"
    if path == "/login":
        page = session.get(app.url("/login"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = session.post(app.url(path), data={"username": "admin", "password": password,
                                                 "csrf_token": token}, allow_redirects=False)
    assert response.status_code == 302, response.text
    session.headers["X-CSRF-Token"] = token
    return session
