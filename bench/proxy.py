"""Sidecar overhead: the same llama-server measured direct (internal port) and through the
sidecar (public port), alternating, in one run.

Needs the provisioned test environment (LLAMA_SERVER_BIN, LLAMAMAN_TEST_MODELS_DIR,
LLAMAMAN_TEST_MODEL): source /var/lib/llamaman-test/test-env.sh first.

Usage: .venv/bin/python bench/proxy.py [--reps 3] [--seconds 4] [--stream-runs 10]
                                      [--parts small,stream,gate,wake]
"""
from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report, summary, throughput, timed_requests
from bench.harness import CHAT, Pytestless, exit_on_sigterm, internal_of, stop_manager
from tests.e2e.instancekit import runtime_env, start_manager
from tests.helpers import start_llama_process, wait_http


def stream_once(port: int, key: str, body: dict) -> dict:
    """Time to first byte, to first content chunk, total, and the number of chunks."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    ttfb = time.perf_counter() - start
    first_content, chunks, arrivals = None, 0, []
    for line in response:
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        chunks += 1
        arrivals.append(time.perf_counter())
        delta = json.loads(line[6:])["choices"]
        if first_content is None and delta and delta[0]["delta"].get("content"):
            first_content = time.perf_counter() - start
    total = time.perf_counter() - start
    conn.close()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return {"ttfb_ms": ttfb * 1000, "first_content_ms": (first_content or total) * 1000,
            "total_ms": total * 1000, "chunks": chunks, "gap_ms": statistics.median(gaps) * 1000 if gaps else 0}


def burst(port: int, key: str, count: int) -> float:
    """Seconds for `count` concurrent 32-token streams to finish."""
    threads = [threading.Thread(target=stream_once, args=(port, key, CHAT)) for _ in range(count)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def median_rows(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    return {k: statistics.median(r[k] for r in rows) for k in keys}


def small_requests(direct: int, internal_key: str, public: int, key: str, reps: int,
                   seconds: float) -> list[dict]:
    """Latency at concurrency 1 and throughput at 8 and 32, direct and sidecar alternating."""
    vias = (("direct", direct, {"Authorization": f"Bearer {internal_key}"}),
            ("sidecar", public, {"Authorization": f"Bearer {key}"}))
    rows = []
    for path in ("/health", "/v1/models"):
        for concurrency in (1, 8, 32):
            samples: dict[str, list[dict]] = {"direct": [], "sidecar": []}
            for _ in range(reps):
                for name, port, headers in vias:
                    samples[name].append(one_sample(port, path, concurrency, seconds, headers))
            rows += [{"test": f"GET {path}", "via": name, "concurrency": concurrency, **median_rows(runs)}
                     for name, runs in samples.items()]
    return rows


def one_sample(port: int, path: str, concurrency: int, seconds: float, headers: dict) -> dict:
    if concurrency == 1:
        timed_requests(port, path, 50, headers)  # warm the connection and caches
        return {**summary(timed_requests(port, path, 1000, headers)), "rps": 0.0}
    return throughput(port, path, concurrency, seconds, headers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--stream-runs", type=int, default=10)
    parser.add_argument("--parts", default="small,stream,gate,wake", help="comma-separated subset to run")
    args = parser.parse_args()
    exit_on_sigterm()
    models = Path(os.environ["LLAMAMAN_TEST_MODELS_DIR"])
    model = models / os.environ["LLAMAMAN_TEST_MODEL"]
    with tempfile.TemporaryDirectory() as tmp:
        # A node name of its own: a manager's boot removes its node's llama-servers it has no
        # record of, which must never be another run's.
        env = {**runtime_env("process", Pytestless(), models, ports=26000),
               "LLAMAMAN_NODE_NAME": f"bench-proxy-{os.getpid()}"}
        manager = start_manager(Path(tmp), env)
        try:
            rows = run(manager, model, Path(tmp) / "data", args)
        finally:
            stop_manager(manager)
    report("proxy", rows, ["test", "via", "concurrency", "p50_ms", "p99_ms", "rps", "ttfb_ms",
                           "first_content_ms", "total_ms", "chunks", "gap_ms", "seconds"])


def run(manager, model: Path, data_dir: Path, args) -> list[dict]:
    instance = manager.wait_status(manager.launch(model, parallel=4, ctx_size=2048, threads=2)["id"], "healthy")
    direct_port, internal_key = internal_of(data_dir, instance["id"])
    public = instance["port"]
    parts = set(args.parts.split(","))
    rows = []
    if "small" in parts:
        rows += small_requests(direct_port, internal_key, public, manager.key, args.reps, args.seconds)
    if "stream" in parts:
        rows += streaming(direct_port, internal_key, public, manager.key, args.stream_runs)
    if "gate" in parts:
        rows += gate_burst(manager, instance, direct_port, internal_key, args.reps)
    if "wake" in parts:
        rows += wake(manager, model, args.reps)
    return rows


def streaming(direct: int, internal_key: str, public: int, key: str, runs: int) -> list[dict]:
    samples = {"direct": [], "sidecar": []}
    for _ in range(runs):
        samples["direct"].append(stream_once(direct, internal_key, CHAT))
        samples["sidecar"].append(stream_once(public, key, CHAT))
    return [{"test": "stream 32 tokens", "via": via, "concurrency": 1, **median_rows(rows)}
            for via, rows in samples.items()]


def gate_burst(manager, instance: dict, direct: int, internal_key: str, reps: int) -> list[dict]:
    manager.api.patch(manager.url(f"/api/instances/{instance['id']}"),
                      json={"max_concurrent": 4, "max_queue_depth": 20}).raise_for_status()
    times = {"direct": [], "sidecar": []}
    for _ in range(reps):
        times["direct"].append(burst(direct, internal_key, 12))
        times["sidecar"].append(burst(instance["port"], manager.key, 12))
    return [{"test": "12 streams, gate 4", "via": via, "concurrency": 12, "seconds": statistics.median(t)}
            for via, t in times.items()]


def wake(manager, model: Path, reps: int) -> list[dict]:
    """First content for a sleeping instance vs llama-server started by hand (same binary and
    model, /health polled every 10 ms) to its first content."""
    rows = {"plain cold start": [], "sidecar wake": []}
    for _ in range(reps):
        rows["plain cold start"].append(plain_cold_start(model))
        launched = manager.launch(model, threads=2, ctx_size=512, parallel=1, idle_timeout_min=0.02)
        instance = manager.wait_status(launched["id"], "healthy")  # same settings as the plain start
        manager.wait_status(instance["id"], "sleeping", timeout=30)
        rows["sidecar wake"].append(stream_once(instance["port"], manager.key, CHAT)["first_content_ms"])
        manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
    return [{"test": "first content from cold", "via": via, "concurrency": 1,
             "first_content_ms": statistics.median(v)} for via, v in rows.items()]


def plain_cold_start(model: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        server = start_llama_process(os.environ["LLAMA_SERVER_BIN"], model, Path(tmp) / "log",
                                     "--api-key", "bench")
        try:
            wait_http(f"{server.base_url}/health", timeout=60, interval=0.01)
            ready = time.perf_counter()
            return (ready - start) * 1000 + stream_once(server.port, "bench", CHAT)["first_content_ms"]
        finally:
            server.stop()


if __name__ == "__main__":
    main()
