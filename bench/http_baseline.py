"""Baseline cost of the app's request path: GET /health (no auth) and an admin-key GET
/api/settings (guard + key lookup + settings read) at concurrency 1, 8 and 32.

Usage: .venv/bin/python bench/http_baseline.py [--seconds 5] [--database-url URL]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report, summary, throughput, timed_requests
from tests.e2e.appproc import start_app


def admin_key(base: str) -> str:
    """Run setup in a session and create an admin key."""
    session = requests.Session()
    page = session.get(f"{base}/setup").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    session.post(f"{base}/setup", data={"username": "bench", "password": "bench-password",
                                          "csrf_token": token})
    created = session.post(f"{base}/api/api-keys", json={"name": "bench", "scope": "admin"},
                           headers={"X-CSRF-Token": token})
    created.raise_for_status()
    return created.json()["key"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"DATABASE_URL": args.database_url} if args.database_url else {}
        app = start_app(Path(tmp), **extra)
        try:
            rows = measure(app, args.seconds, "sql" if args.database_url else "json")
        finally:
            app.terminate()
    report("http_baseline", rows, ["endpoint", "storage", "concurrency", "p50_ms", "p99_ms", "rps", "requests"])


def measure(app, seconds: float, storage: str) -> list[dict]:
    key = admin_key(app.url("").rstrip("/"))
    targets = [("/health", {}), ("/api/settings", {"Authorization": f"Bearer {key}"})]
    rows = []
    for path, headers in targets:
        timed_requests(app.ui_port, path, 200, headers)  # warm-up
        rows.append({"endpoint": path, "storage": storage, "concurrency": 1,
                     **summary(timed_requests(app.ui_port, path, 2000, headers))})
        for concurrency in (8, 32):
            rows.append({"endpoint": path, "storage": storage, "concurrency": concurrency,
                         **throughput(app.ui_port, path, concurrency, seconds, headers)})
    return rows


if __name__ == "__main__":
    main()
