"""The sidecar against the same llama-server direct, on the Docker or the native runtime,
alternating in one run: wrk request rates (GET /health, p50/p99), bursts of 12 streams
through the gate (max_concurrent 4: makespan and each request's queue wait), and streamed
chats with every gap between SSE events (raw-socket client). With --runtime docker, "bridge"
is llama-server on its container address, skipping docker-proxy; "direct" is the published
internal port the sidecar itself uses. The manager runs under bench/probe.py, so GC pauses
during the streaming part are reported too.

Needs test-env.sh (and wrk: scripts/provision.sh installs it).
Usage: .venv/bin/python bench/sidecar_wrk.py [--runtime docker|process] [--reps 3]
           [--seconds 10] [--streams 20] [--bursts 3] [--parts wrk,gate,stream]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.common import percentile, report
from bench.harness import (
    Stream,
    container_address,
    cpu_seconds,
    cpu_shares,
    internal_of,
    loadavg,
    manager_env,
    start_bench_manager,
    stop_manager,
    stream_chat,
    wrk,
)

PORTS = {"process": 27000, "docker": 27300}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("docker", "process"), default="docker")
    parser.add_argument("--reps", type=int, default=3, help="wrk runs per via and connection count")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="32", help="comma-separated wrk connection counts")
    parser.add_argument("--streams", type=int, default=20, help="sequential streamed chats per via and round")
    parser.add_argument("--rounds", type=int, default=3, help="streaming rounds (each alternates the vias)")
    parser.add_argument("--bursts", type=int, default=3, help="12-stream bursts per via")
    parser.add_argument("--parts", default="wrk,gate,stream")
    args = parser.parse_args()
    env = manager_env(args.runtime, PORTS[args.runtime], "bench-sw")
    rows: list[dict] = []
    gaps: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        manager = start_bench_manager(Path(tmp), env, probe)
        try:
            run(manager, env, Path(tmp) / "data", probe, args, rows, gaps)
        finally:
            stop_manager(manager)
            if rows:  # an interrupted run still reports the parts it finished
                write(args.runtime, rows, gaps)


def write(runtime: str, rows: list[dict], gaps: dict) -> None:
    name = f"sidecar_wrk_{runtime}"
    report(name, rows, ["part", "via", "run", "load", "rps", "p50_ms", "p99_ms", "errors", "makespan_s",
                        "wait_p50_ms", "wait_max_ms", "worst_gap_ms", "p99_gap_ms", "slowest_ms", "gc_max_ms",
                        "cpu_busy_pct", "cpu_wrk_pct", "cpu_manager_pct", "cpu_server_pct", "cpu_docker_proxy_pct"])
    extra = Path(__file__).resolve().parent / "results" / f"{name}_gaps.json"
    extra.write_text(json.dumps(gaps))


def run(manager, env: dict, data_dir: Path, probe: Path, args, rows: list[dict], gaps: dict) -> None:
    """Launch one instance, then run the parts, adding their rows and stream gaps."""
    model = Path(os.environ["LLAMAMAN_TEST_MODELS_DIR"]) / os.environ["LLAMAMAN_TEST_MODEL"]
    launched = manager.launch(model, parallel=4, ctx_size=2048, threads=2)
    instance = manager.wait_status(launched["id"], "healthy")
    internal_port, internal_key = internal_of(data_dir, instance["id"])
    vias = {"direct": ("127.0.0.1", internal_port, internal_key),
            "sidecar": ("127.0.0.1", instance["port"], manager.key)}
    if env["LLAMAMAN_RUNTIME"] == "docker" and (bridge := container_address(env, internal_port)):
        vias["bridge"] = (*bridge, internal_key)
    for host, port, key in vias.values():  # warm every path once
        stream_chat(host, port, key)
    parts = set(args.parts.split(","))
    if "wrk" in parts:
        rows += wrk_part(vias, args)
    if "stream" in parts:
        stream_rows, stream_gaps = stream_part(vias, manager, probe, args)
        rows += stream_rows
        gaps.update(stream_gaps)
    if "gate" in parts:
        manager.api.patch(manager.url(f"/api/instances/{instance['id']}"),
                          json={"max_concurrent": 4, "max_queue_depth": 20}).raise_for_status()
        gate_part(vias, args, rows)


def wrk_part(vias: dict, args) -> list[dict]:
    rows = []
    for connections in (int(c) for c in args.connections.split(",")):
        for rep in range(1, args.reps + 1):
            for via, (host, port, key) in vias.items():
                load, before, began = loadavg(), cpu_seconds(), time.monotonic()
                result = wrk(host, port, "/health", key, connections, args.seconds)
                shares = cpu_shares(before, cpu_seconds(), time.monotonic() - began)
                rows.append({"part": f"wrk /health c{connections}", "via": via, "run": rep, "load": load,
                             **result, **shares})
    return rows


def stream_part(vias: dict, manager, probe: Path, args) -> tuple[list[dict], dict]:
    """Rounds of `streams` sequential chats per via; each round alternates the vias."""
    rows, all_gaps = [], {}
    for round_no in range(1, args.rounds + 1):
        for via, (host, port, key) in vias.items():
            load = loadavg()
            began = time.time()
            streams = [stream_chat(host, port, key) for _ in range(args.streams)]
            gc_max = worker_gc_max(manager, probe, since=began)
            gaps = [g for s in streams for g in s.gaps_ms()]
            all_gaps[f"{via}-{round_no}"] = [s.gaps_ms() for s in streams]
            rows.append({"part": f"{args.streams} streams x 32 tok", "via": via, "run": round_no, "load": load,
                         "worst_gap_ms": max(gaps), "p99_gap_ms": percentile(gaps, 99),
                         "p50_ms": statistics.median((s.done_at - s.started) * 1000 for s in streams),
                         "slowest_ms": max((s.done_at - s.started) * 1000 for s in streams), "gc_max_ms": gc_max})
    return rows, all_gaps


def worker_gc_max(manager, probe: Path, since: float) -> float:
    """The longest GC pause (ms) in the gunicorn worker since the wall time `since`."""
    worker = psutil.Process(manager.app.proc.pid).children()[0]
    os.kill(worker.pid, signal.SIGPROF)
    path = Path(f"{probe}.{worker.pid}")
    for _ in range(50):
        time.sleep(0.05)
        try:
            pauses = json.loads(path.read_text())["gc_pauses"]
            path.unlink()
            return max([ms for at, _, ms in pauses if at >= since] or [0.0])
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return -1.0


def gate_part(vias: dict, args, rows: list[dict]) -> None:
    """Bursts of 12 concurrent streams; queue wait = time to headers minus direct's (same rank)."""
    direct_heads: list[float] = []
    for rep in range(1, args.bursts + 1):
        for via, (host, port, key) in vias.items():
            load = loadavg()
            makespan, streams = burst(host, port, key, 12)
            heads = sorted((s.headers_at - s.started) * 1000 for s in streams)
            if via == "direct":
                direct_heads = heads
            waits = [max(0.0, h - d) for h, d in zip(heads, direct_heads)] if via != "direct" else [0.0]
            rows.append({"part": "12 streams, gate 4", "via": via, "run": rep, "load": load,
                         "makespan_s": makespan, "wait_p50_ms": statistics.median(waits), "wait_max_ms": max(waits),
                         "worst_gap_ms": max(g for s in streams for g in s.gaps_ms()),
                         "slowest_ms": max((s.done_at - s.started) * 1000 for s in streams)})


def burst(host: str, port: int, key: str, count: int) -> tuple[float, list[Stream]]:
    """Seconds for `count` concurrent streamed chats to finish, and their timings."""
    results: list[Stream] = []
    threads = [threading.Thread(target=lambda: results.append(stream_chat(host, port, key))) for _ in range(count)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, results


if __name__ == "__main__":
    main()
