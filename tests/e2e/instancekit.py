"""Running the app with a real runtime, and driving instances over its API."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.e2e.appproc import AppProcess, admin_session, start_app

RUNTIMES = ("process", "docker")
CONTAINER_PREFIX = "llamaman-e2e-"
NETWORK = "llamaman-e2e-net"
SMALL = {"ctx_size": 512, "threads": 2, "parallel": 1, "n_gpu_layers": 0}


def runtime_env(runtime: str, request: pytest.FixtureRequest, models_dir: Path, ports: int) -> dict:
    """Environment selecting a runtime, its components, and private port pools."""
    env = {"LLAMAMAN_RUNTIME": runtime, "MODELS_DIR": str(models_dir),
           "PORT_RANGE_START": str(ports), "PORT_RANGE_END": str(ports + 19),
           "INTERNAL_PORT_RANGE_START": str(ports + 100), "INTERNAL_PORT_RANGE_END": str(ports + 119)}
    if runtime == "process":
        env["LLAMA_SERVER_BIN"] = request.getfixturevalue("llama_server_bin")
    else:
        request.getfixturevalue("docker_client")
        env.update(LLAMA_IMAGE=request.getfixturevalue("llama_image"), LLAMAMAN_IN_DOCKER="false",
                   LLAMA_HOST_ADDR="127.0.0.1", LLAMA_CONTAINER_PREFIX=CONTAINER_PREFIX,
                   LLAMA_NETWORK=NETWORK)
    return env


def remove_product_containers(docker_client) -> None:
    for container in docker_client.containers.list(all=True, filters={"name": CONTAINER_PREFIX}):
        container.remove(force=True)


class Manager:
    """An app process plus an admin session and an inference key."""

    def __init__(self, app: AppProcess) -> None:
        self.app = app
        self.api = admin_session(app)
        created = self.api.post(app.url("/api/api-keys"), json={"name": "e2e", "scope": "inference"})
        created.raise_for_status()
        self.key = created.json()["key"]

    def url(self, path: str) -> str:
        return self.app.url(path)

    def launch(self, model_path: Path, **fields) -> dict:
        response = self.api.post(self.url("/api/instances"),
                                 json={"model_path": str(model_path), **SMALL, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def instance(self, instance_id: str) -> dict:
        response = self.api.get(self.url(f"/api/instances/{instance_id}"))
        response.raise_for_status()
        return response.json()

    def wait_status(self, instance_id: str, status: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.instance(instance_id)
            if seen["status"] == status:
                return seen
            time.sleep(0.1)
        raise AssertionError(f"instance never became {status}: {seen}\n{self.logs(instance_id)}")

    def logs(self, instance_id: str, lines: int = 40) -> str:
        response = self.api.get(self.url(f"/api/instances/{instance_id}/logs?lines={lines}"))
        return "\n".join(response.json().get("lines", [])) if response.ok else response.text


def stop_all(manager: Manager) -> None:
    """Stop every instance of the manager, then the manager itself."""
    for instance in manager.api.get(manager.url("/api/instances")).json():
        manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
    manager.app.kill()


def chat(port: int, key: str | None, stream: bool = True, max_tokens: int = 16, **extra) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": max_tokens,
            "stream": stream, **extra}
    return requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers,
                         stream=stream, timeout=120)


def start_manager(tmp_path: Path, env: dict) -> Manager:
    return Manager(start_app(tmp_path, **env))
