"""The manager's memory and threads: RSS of the gunicorn worker (and master) and every worker
thread by name, idle with no instance, with one healthy instance, and after load (wrk on the
sidecar and the UI port, then a burst of streams). Threads are named by bench/probe.py's dump.

Needs test-env.sh (and wrk). Usage: .venv/bin/python bench/footprint.py [--runtime docker|process]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.common import report
from bench.harness import (
    manager_env,
    start_bench_manager,
    stop_manager,
    stream_chat,
    wrk,
)

PORTS = {"process": 27600, "docker": 27700}
SETTLE_S = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("docker", "process"), default="docker")
    parser.add_argument("--label", default="", help="tag of this run in the JSON name (e.g. before/after)")
    args = parser.parse_args()
    env = manager_env(args.runtime, PORTS[args.runtime], "bench-fp")
    rows, names = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        manager = start_bench_manager(Path(tmp), env, probe)
        try:
            for state, step in (("idle, 0 instances", lambda: None),
                                ("idle, 1 healthy", lambda: launch(manager)),
                                ("after load", lambda: load(manager))):
                step()
                time.sleep(SETTLE_S)
                row, threads = sample(manager, probe)
                rows.append({"state": state, **row})
                names[state] = threads
        finally:
            stop_manager(manager)
    name = "footprint_" + args.runtime + (f"_{args.label}" if args.label else "")
    report(name, rows, ["state", "worker_rss_mb", "worker_uss_mb", "master_rss_mb", "threads"])
    for state, threads in names.items():
        print(f"\n{state}: " + ", ".join(f"{n} x{c}" for n, c in threads.items()))
    (Path(__file__).resolve().parent / "results" / f"{name}_threads.json").write_text(json.dumps(names, indent=2))


def launch(manager) -> None:
    model = Path(os.environ["LLAMAMAN_TEST_MODELS_DIR"]) / os.environ["LLAMAMAN_TEST_MODEL"]
    launched = manager.launch(model, parallel=4, ctx_size=2048, threads=2)
    manager.instances = [manager.wait_status(launched["id"], "healthy")]


def load(manager) -> None:
    """wrk c32 on the sidecar's and the UI's /health, then 12 concurrent streams."""
    instance = manager.instances[0]
    wrk("127.0.0.1", instance["port"], "/health", manager.key, 32, 5)
    wrk("127.0.0.1", manager.app.ui_port, "/health", manager.key, 32, 5)
    streams = [threading.Thread(target=stream_chat, args=("127.0.0.1", instance["port"], manager.key))
               for _ in range(12)]
    for thread in streams:
        thread.start()
    for thread in streams:
        thread.join()


def sample(manager, probe: Path) -> tuple[dict, dict]:
    """RSS/USS (MB) of master and worker, and the worker's threads grouped by name."""
    master = psutil.Process(manager.app.proc.pid)
    worker = master.children()[0]
    os.kill(worker.pid, signal.SIGPROF)
    path = Path(f"{probe}.{worker.pid}")
    for _ in range(100):
        time.sleep(0.05)
        if path.exists() and path.stat().st_size:
            break
    names = json.loads(path.read_text())["threads"]
    path.unlink()
    grouped = collections.Counter(re.sub(r"\d+", "N", name) for name in names)
    row = {"worker_rss_mb": worker.memory_info().rss / 2**20, "worker_uss_mb": worker.memory_full_info().uss / 2**20,
           "master_rss_mb": master.memory_info().rss / 2**20, "threads": worker.num_threads()}
    return row, dict(grouped.most_common())


if __name__ == "__main__":
    main()
