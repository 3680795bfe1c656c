"""Instance lifecycle timings on each runtime: launch request → healthy, and SIGKILL → crash
noticed by the manager (status leaves healthy), with the real gemma model.

Needs the provisioned test environment: source /var/lib/llamaman-test/test-env.sh first.
Usage: .venv/bin/python bench/instances.py [--runs 5] [--runtimes process,docker]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from bench.common import report
from bench.harness import exit_on_sigterm, stop_manager
from tests.e2e.instancekit import remove_product_containers, runtime_env, start_manager

POLL_S = 0.01


class Fixtures:
    """Enough of pytest's request object for runtime_env()."""

    def getfixturevalue(self, name: str) -> str:
        return {"llama_server_bin": os.environ.get("LLAMA_SERVER_BIN", ""), "docker_client": "",
                "llama_image": os.environ.get("LLAMAMAN_TEST_IMAGE", "")}[name]


def poll(manager, instance_id: str, done) -> float:
    while True:
        record = manager.instance(instance_id)
        if done(record):
            return time.perf_counter()
        time.sleep(POLL_S)


def kill(runtime: str, handle: str) -> None:
    if runtime == "process":
        os.kill(int(handle), signal.SIGKILL)
    else:
        docker.from_env().containers.get(handle).kill()


def measure(runtime: str, runs: int, models: Path, model: Path) -> dict:
    launch, crash = [], []
    with tempfile.TemporaryDirectory() as tmp:
        manager = start_manager(Path(tmp), runtime_env(runtime, Fixtures(), models, ports=27000))
        try:
            for _ in range(runs):
                start = time.perf_counter()
                instance = manager.launch(model, auto_restart=False)
                launch.append(poll(manager, instance["id"], lambda r: r["status"] == "healthy") - start)
                handle = manager.instance(instance["id"])["runtime"]["handle"]
                killed = time.perf_counter()
                kill(runtime, handle)
                crash.append(poll(manager, instance["id"], lambda r: r["status"] != "healthy") - killed)
                manager.api.delete(manager.url(f"/api/instances/{instance['id']}/remove"))
        finally:
            stop_manager(manager)
            if runtime == "docker":
                remove_product_containers(docker.from_env())
    return {"runtime": runtime, "runs": runs,
            "launch_to_healthy_ms": statistics.median(launch) * 1000,
            "launch_min_ms": min(launch) * 1000, "launch_max_ms": max(launch) * 1000,
            "crash_to_noticed_ms": statistics.median(crash) * 1000, "crash_max_ms": max(crash) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runtimes", default="process,docker")
    args = parser.parse_args()
    exit_on_sigterm()
    models = Path(os.environ["LLAMAMAN_TEST_MODELS_DIR"])
    model = models / os.environ["LLAMAMAN_TEST_MODEL"]
    rows = [measure(runtime, args.runs, models, model) for runtime in args.runtimes.split(",")]
    report("instances", rows, ["runtime", "runs", "launch_to_healthy_ms", "launch_min_ms", "launch_max_ms",
                               "crash_to_noticed_ms", "crash_max_ms"])


if __name__ == "__main__":
    main()
