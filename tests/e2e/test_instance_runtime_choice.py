"""Per-instance runtime choice on a native-process manager: one instance in a real Docker
container, switched back to a native llama-server by an update & restart."""
import pytest
import requests

from tests.e2e.instancekit import runtime_env, start_manager

pytestmark = pytest.mark.timeout(600)

V1 = "/api/v1/instances"
PREFIX = "llamaman-e2e-choice-"
HELLO = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, models_dir, docker_client):
    env = {**runtime_env("docker", request, models_dir, ports=26600), "LLAMAMAN_RUNTIME": "process",
           "LLAMA_SERVER_BIN": request.getfixturevalue("llama_server_bin"), "LLAMA_CONTAINER_PREFIX": PREFIX}
    manager = start_manager(tmp_path_factory.mktemp("runtime-choice"), env)
    yield manager
    for instance in requests.get(manager.url(V1), headers=_admin(manager)).json():
        requests.post(manager.url(f"{V1}/{instance['id']}/stop"), headers=_admin(manager))
    manager.app.kill()
    for container in docker_client.containers.list(all=True, filters={"name": PREFIX}):
        container.remove(force=True)


def _admin(manager):
    if not hasattr(manager, "admin"):
        created = manager.api.post(manager.url("/api/api-keys"), json={"name": "choice", "scope": "admin"})
        manager.admin = {"Authorization": f"Bearer {created.json()['key']}"}
    return manager.admin


def test_one_instance_runs_in_docker_then_natively(manager, model_path, docker_client):
    admin = _admin(manager)
    body = {"backend_options": {"model": str(model_path), "ctx_size": 512, "threads": 2, "parallel": 1,
                                "gpu_layers": 0}, "docker_enabled": True, "on_demand_start": True}
    created = requests.post(manager.url(f"{V1}/dock-a"), json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["options"]["docker_enabled"] is True
    port, instance_id = created.json()["port"], created.json()["id"]

    inference = {"Authorization": f"Bearer {manager.key}"}
    first = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=HELLO, headers=inference,
                          timeout=300)
    assert first.status_code == 200, first.text + manager.logs(instance_id)
    assert manager.instance(instance_id)["runtime"]["kind"] == "docker"
    assert [c.name for c in docker_client.containers.list(filters={"name": PREFIX})] == [PREFIX + instance_id]

    update = requests.put(manager.url(f"{V1}/dock-a"), json={"docker_enabled": False}, headers=admin)
    assert update.status_code == 200, update.text
    assert update.json()["restarted"] is True
    assert update.json()["changes"]["docker_enabled"] == {"from": "docker", "to": "process"}
    healthy = manager.wait_status(instance_id, "healthy", timeout=120)
    assert healthy["runtime"]["kind"] == "process" and healthy["port"] == port
    assert docker_client.containers.list(all=True, filters={"name": PREFIX}) == []
    again = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=HELLO, headers=inference,
                          timeout=300)
    assert again.status_code == 200, again.text
