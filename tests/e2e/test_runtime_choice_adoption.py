"""An instance in the runtime that is not the manager's global one survives the manager's kill -9:
the restarted manager adopts it in its own runtime (and the instance beside it in the global one),
duplicating and losing nothing. Both ways: Docker on a native manager, native on a Docker manager."""
import pytest

from tests.e2e.instancekit import chat, runtime_env, start_manager

pytestmark = pytest.mark.timeout(600)

PREFIX = "llamaman-e2e-adopt-"


OTHER = {"process": "docker", "docker": "process"}


@pytest.fixture(params=["process", "docker"])
def env(request, models_dir, docker_client):
    yield {**runtime_env("docker", request, models_dir, ports=27800), "LLAMAMAN_RUNTIME": request.param,
           "LLAMA_SERVER_BIN": request.getfixturevalue("llama_server_bin"), "LLAMA_CONTAINER_PREFIX": PREFIX}
    for container in docker_client.containers.list(all=True, filters={"name": PREFIX}):
        container.remove(force=True)


def ours(docker_client):
    return [c.name for c in docker_client.containers.list(all=True, filters={"name": PREFIX})]


def test_non_global_runtime_instance_is_adopted_after_kill9(env, tmp_path, model_path, docker_client):
    manager = start_manager(tmp_path, env)
    try:
        chosen = OTHER[env["LLAMAMAN_RUNTIME"]]
        other = manager.launch(model_path, runtime_kind=chosen)
        default = manager.launch(model_path)
        before = {i["id"]: manager.wait_status(i["id"], "healthy", timeout=300) for i in (other, default)}
        assert before[other["id"]]["runtime"]["kind"] == chosen
        assert before[default["id"]]["runtime"]["kind"] == env["LLAMAMAN_RUNTIME"]
        docked = other if chosen == "docker" else default
        assert ours(docker_client) == [PREFIX + docked["id"]]
        manager.app.kill()

        manager = start_manager(tmp_path, env)
        listed = manager.api.get(manager.url("/api/instances")).json()
        assert sorted(i["id"] for i in listed) == sorted(before)  # nothing lost, nothing added
        for instance_id, old in before.items():
            now = manager.wait_status(instance_id, "healthy", timeout=120)
            assert now["runtime"] == old["runtime"], "adopted in its own runtime, not relaunched"
            assert now["port"] == old["port"] and now["runtime_kind"] == old["runtime_kind"]
            assert chat(now["port"], manager.key, stream=False).status_code == 200
            log = manager.logs(instance_id, 2000)
            assert "adopted the running llama-server" in log and log.count("] launching ") == 1
        assert ours(docker_client) == [PREFIX + docked["id"]]
    finally:
        for instance in manager.api.get(manager.url("/api/instances")).json():
            manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
        manager.app.kill()
