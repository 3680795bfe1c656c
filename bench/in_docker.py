"""In-Docker start-up, as tests/e2e/test_in_docker.py runs it: the manager image built offline,
then per fresh start the seconds from `docker run` to /health, to a healthy instance (launched
through the API) and to the first token of a chat on its public port.

Needs test-env.sh (DOCKER_HOST, LLAMAMAN_TEST_BASE_IMAGE, LLAMAMAN_TEST_WHEELHOUSE,
LLAMAMAN_TEST_IMAGE, LLAMAMAN_TEST_MODELS_DIR, LLAMAMAN_TEST_MODEL).
Usage: .venv/bin/python bench/in_docker.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from bench.common import report
from tests.e2e.dockerkit import (
    Client,
    ManagerSetup,
    build_manager_image,
    first_token,
    published,
    remove_node_containers,
    wait_manager,
)
from tests.e2e.instancekit import SMALL


def one_start(client, image: str, tmp: Path) -> dict:
    """One fresh manager: time each step from `docker run`; everything is removed afterwards."""
    made = ManagerSetup(image=image, llama_image=os.environ["LLAMAMAN_TEST_IMAGE"],
                        models_dir=Path(os.environ["LLAMAMAN_TEST_MODELS_DIR"]), data_dir=tmp / "data",
                        logs_dir=tmp / "logs",
                        socket_path=Path(os.environ["DOCKER_HOST"].removeprefix("unix://")))
    network = client.networks.create(made.network, driver="bridge")
    try:
        began = time.monotonic()
        manager = client.containers.run(**made.run_kwargs())
        api = Client(wait_manager(manager))
        health = time.monotonic() - began
        model = f"/models/{os.environ['LLAMAMAN_TEST_MODEL']}"
        launched = api.api.post(api.url("/api/instances"), json={"model_path": model, **SMALL}).json()
        instance = api.wait_status(launched["id"], "healthy")
        healthy = time.monotonic() - began
        token_at, _ = first_token(published(manager, instance["port"]), api.key)
        return {"health_s": health, "instance_healthy_s": healthy, "first_token_s": token_at - began}
    finally:
        for container in client.containers.list(all=True, filters={"name": made.network}):
            container.remove(force=True)
        remove_node_containers(client, made.node)
        network.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env()
    began = time.monotonic()
    image = build_manager_image(client, os.environ["LLAMAMAN_TEST_BASE_IMAGE"],
                                Path(os.environ["LLAMAMAN_TEST_WHEELHOUSE"]))
    build_s = time.monotonic() - began
    size_mb = client.images.get(image).attrs["Size"] / 1e6
    rows = []
    for run in range(1, args.runs + 1):
        tmp = Path(tempfile.mkdtemp(prefix="llamaman-bench-dk-"))
        try:
            rows.append({"run": run, "image_mb": size_mb, "build_s": build_s, **one_start(client, image, tmp)})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report("in_docker", rows, ["run", "image_mb", "build_s", "health_s", "instance_healthy_s",
                               "first_token_s"])


if __name__ == "__main__":
    main()
