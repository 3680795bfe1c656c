"""In-Docker mode as users run it: the manager image built offline (local Debian base image,
local wheelhouse), run with the Docker socket mounted and the host paths set. It detects the
container by itself, spawns llama-server as a sibling on its network, reaches it by name, serves
chats on a public instance port and on :42069, and adopts its instance after a restart."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import env_or_require, require
from tests.e2e.dockerkit import (
    PASSWORD,
    Client,
    ManagerSetup,
    build_manager_image,
    first_token,
    published,
    remove_node_containers,
    wait_health_status,
    wait_manager,
)
from tests.e2e.instancekit import SMALL

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def manager_image(docker_client):
    """The manager image built from this checkout with no registry and no index."""
    base = env_or_require("LLAMAMAN_TEST_BASE_IMAGE", "Debian base image")
    wheelhouse = Path(env_or_require("LLAMAMAN_TEST_WHEELHOUSE", "wheelhouse"))
    if not list(wheelhouse.glob("*.whl")):
        require("wheelhouse", f"{wheelhouse} holds no wheels; run scripts/provision.sh wheels")
    try:
        docker_client.images.get(base)
    except Exception:  # noqa: BLE001 - any failure means the base image is unusable
        require("Debian base image", f"{base} is not in the test engine; run scripts/provision.sh base")
    started = time.monotonic()
    image_id = build_manager_image(docker_client, base, wheelhouse)
    size = docker_client.images.get(image_id).attrs["Size"]
    print(f"\nin-docker: manager image built in {time.monotonic() - started:.1f}s, {size / 1e6:.0f} MB")
    return image_id


@pytest.fixture
def setup(docker_client, manager_image, llama_image, models_dir, tmp_path):
    """Network, host dirs and socket for one manager; everything it made is removed afterwards."""
    socket_path = Path(os.environ["DOCKER_HOST"].removeprefix("unix://"))
    if not socket_path.is_socket():
        require("Docker engine socket", f"{socket_path} is not a unix socket")
    made = ManagerSetup(image=manager_image, llama_image=llama_image, models_dir=models_dir,
                        data_dir=tmp_path / "data", logs_dir=tmp_path / "logs", socket_path=socket_path)
    network = docker_client.networks.create(made.network, driver="bridge", labels={"llamaman.test": "1"})
    yield made
    for container in docker_client.containers.list(all=True, filters={"name": made.network}):
        container.remove(force=True)
    remove_node_containers(docker_client, made.node)
    network.remove()


def chat_via_proxy(client: Client, proxy_port: int) -> dict:
    """A non-streamed OpenAI chat through :42069, naming the model as /v1/models lists it."""
    auth = {"Authorization": f"Bearer {client.key}"}
    models = requests.get(client.url("/v1/models", proxy_port), headers=auth, timeout=10).json()
    name = next(m["id"] for m in models["data"] if "gemma" in m["id"])
    body = {"model": name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    response = requests.post(client.url("/v1/chat/completions", proxy_port), json=body,
                             headers=auth, timeout=180)
    assert response.status_code == 200, response.text
    return response.json()


def siblings(docker_client, made: ManagerSetup) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"llamaman.node={made.node}"})


def assert_sibling_reached_by_name(docker_client, made: ManagerSetup, models_dir: Path) -> str:
    """One sibling, on the manager's network, unpublished, binding the real host paths."""
    (sibling,) = siblings(docker_client, made)
    attrs = sibling.attrs
    assert sibling.name.startswith(made.prefix) and sibling.status == "running"
    assert made.network in attrs["NetworkSettings"]["Networks"]
    assert not attrs["HostConfig"].get("PortBindings"), "in Docker mode nothing is published"
    sources = {m["Destination"]: m["Source"] for m in attrs["Mounts"]}
    assert sources["/models"] == str(models_dir) and sources["/logs"] == str(made.logs_dir)
    assert not attrs["HostConfig"].get("DeviceRequests") and not attrs["HostConfig"].get("Devices")
    return sibling.id


def test_in_docker_end_to_end(docker_client, setup, model_path, models_dir):
    started = time.monotonic()
    manager = docker_client.containers.run(**setup.run_kwargs())
    ui_port = wait_manager(manager)
    client = Client(ui_port)

    launched = client.api.post(client.url("/api/instances"),
                               json={"model_path": f"/models/{model_path.name}", **SMALL})
    assert launched.status_code == 201, launched.text
    instance = client.wait_status(launched.json()["id"], "healthy")
    public = published(manager, instance["port"])
    token_at, _ = first_token(public, client.key)
    print(f"\nin-docker: docker run -> first token {token_at - started:.1f}s")

    sibling_id = assert_sibling_reached_by_name(docker_client, setup, models_dir)
    logs = manager.logs().decode(errors="replace")
    assert "manager runs in a container" in logs and f"network {setup.network}" in logs
    reply = chat_via_proxy(client, published(manager, 42069))
    assert reply["choices"][0]["message"]["content"] is not None
    assert wait_health_status(manager) == "healthy"
    assert manager.attrs["Config"]["User"] == "llamaman"

    manager.restart(timeout=30)
    client.ui_port = wait_manager(manager)
    client.wait_status(instance["id"], "healthy", timeout=60)  # adopted, then health-checked
    assert [(i["id"], i["status"]) for i in client.instances()] == [(instance["id"], "healthy")]
    assert [c.id for c in siblings(docker_client, setup)] == [sibling_id], "adopted, not duplicated"
    first_token(published(manager, instance["port"]), client.key)
    assert_no_secrets(manager.logs().decode(errors="replace"), client.key)


def assert_no_secrets(logs: str, key: str) -> None:
    """Access lines are structured; no key, password or Authorization header is ever logged."""
    access = [line for line in logs.splitlines() if "method=" in line and "path=" in line]
    assert any('path="/v1/chat/completions" status=200' in line for line in access), logs[-3000:]
    assert any('path="/api/instances"' in line for line in access)
    for secret in (key, key[len("llm-"):], PASSWORD):
        assert secret not in logs
    assert "Bearer" not in logs and "Authorization" not in logs
