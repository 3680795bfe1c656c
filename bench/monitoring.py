"""Cost of the monitoring routes: p50 and req/s of GET /api/gpu-info and /api/system-info at
concurrency 8 (GET /health as the floor), and the manager's CPU over a window while one client
polls both every second, against the same window idle.

Usage: .venv/bin/python bench/monitoring.py [--seconds 5] [--cpu-seconds 60]
"""
from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report, throughput, timed_requests
from bench.http_baseline import admin_key
from tests.e2e.appproc import AppProcess, start_app

ROUTES = ("/health", "/api/gpu-info", "/api/system-info")
POLLED = ("/api/gpu-info", "/api/system-info")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput run")
    parser.add_argument("--cpu-seconds", type=float, default=60.0, help="length of each CPU window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = start_app(Path(tmp), LLAMAMAN_RUNTIME="process", LLAMA_SERVER_BIN="/nonexistent")
        try:
            headers = {"Authorization": f"Bearer {admin_key(app.url('').rstrip('/'))}"}
            http_rows = measure_routes(app, headers, args.seconds)
            cpu_rows = measure_cpu(app, headers, args.cpu_seconds)
        finally:
            app.terminate()
    report("monitoring", http_rows, ["endpoint", "concurrency", "p50_ms", "p99_ms", "rps", "requests", "failed"])
    print()
    report("monitoring_cpu", cpu_rows, ["scenario", "seconds", "polls", "cpu_s", "cpu_pct_of_one_core"])


def measure_routes(app: AppProcess, headers: dict, seconds: float) -> list[dict]:
    rows = []
    for path in ROUTES:
        timed_requests(app.ui_port, path, 100, headers)  # warm-up
        rows.append({"endpoint": path, "concurrency": 8, **throughput(app.ui_port, path, 8, seconds, headers)})
    return rows


def measure_cpu(app: AppProcess, headers: dict, seconds: float) -> list[dict]:
    """CPU seconds of the manager (gunicorn master and worker) over the window, idle then polled."""
    time.sleep(2)  # let the throughput runs' connections close
    rows = []
    for scenario in ("idle", "polled every 1 s"):
        stop = threading.Event()
        polls = [0]
        poller = threading.Thread(target=poll, args=(app.ui_port, headers, stop, polls))
        before = cpu_seconds(app.proc.pid)
        if scenario != "idle":
            poller.start()
        time.sleep(seconds)
        used = cpu_seconds(app.proc.pid) - before
        stop.set()
        if poller.is_alive():
            poller.join()
        rows.append({"scenario": scenario, "seconds": seconds, "polls": polls[0], "cpu_s": used,
                     "cpu_pct_of_one_core": 100 * used / seconds})
    return rows


def poll(port: int, headers: dict, stop: threading.Event, polls: list[int]) -> None:
    """What a dashboard does: both routes once a second over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        for path in POLLED:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}")
        polls[0] += 1
        stop.wait(1.0)
    conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (gunicorn's worker)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


if __name__ == "__main__":
    main()
