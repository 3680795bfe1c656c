"""Shared benchmark helpers: keep-alive HTTP timing, percentiles, table + JSON output."""
from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed_requests(port: int, path: str, count: int, headers: dict | None = None) -> list[float]:
    """Latencies (ms) of count sequential GETs over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        latencies.append((time.perf_counter() - start) * 1000)
    conn.close()
    return latencies


def throughput(port: int, path: str, concurrency: int, seconds: float, headers: dict | None = None) -> dict:
    """Requests/s and latency percentiles with `concurrency` keep-alive clients for `seconds`."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        local, failed = [], 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers or {})
                conn.getresponse().read()
            except (http.client.HTTPException, OSError):  # the server dropped a kept-alive connection
                failed += 1
                conn.close()
                continue
            local.append((time.perf_counter() - start) * 1000)
        conn.close()
        with lock:
            latencies.extend(local)
            failures[0] += failed

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {"rps": len(latencies) / elapsed, "p50_ms": percentile(latencies or [0.0], 50),
            "p99_ms": percentile(latencies or [0.0], 99), "requests": len(latencies), "failed": failures[0]}


def summary(latencies: list[float]) -> dict:
    return {"p50_ms": statistics.median(latencies), "p99_ms": percentile(latencies, 99),
            "requests": len(latencies)}


def report(name: str, rows: list[dict], columns: list[str]) -> None:
    """Print rows as a table and write them to bench/results/<name>.json."""
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "time": time.time(), "rows": rows}, indent=2))
    print(f"\nwrote {path}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)
