"""Crashes, auto-restart with backoff, and restore after the manager is killed (-9)."""
import os
import signal
import time

import pytest
import requests

from tests.e2e.instancekit import (
    RUNTIMES,
    chat,
    remove_product_containers,
    runtime_env,
    start_manager,
)

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(params=RUNTIMES)
def runtime(request):
    yield request.param
    if request.param == "docker":
        remove_product_containers(request.getfixturevalue("docker_client"))


def kill_llama(request, runtime: str, instance: dict) -> float:
    """SIGKILL the instance's llama-server; returns the kill time (epoch)."""
    handle = instance["runtime"]["handle"]
    if runtime == "process":
        os.kill(int(handle), signal.SIGKILL)
    else:
        request.getfixturevalue("docker_client").containers.get(handle).kill()
    return time.time()


def wait_until(check, timeout=60, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_crashes_restart_with_backoff_then_fail(request, tmp_path, models_dir, model_path, runtime):
    env = runtime_env(runtime, request, models_dir, ports=23000)
    manager = start_manager(tmp_path, env)
    try:
        instance = manager.wait_status(manager.launch(
            model_path, auto_restart=True, max_restarts=2, restart_delay=1)["id"], "healthy")
        for restart, delay in ((1, 1.0), (2, 2.0)):
            killed = kill_llama(request, runtime, instance)
            wait_until(lambda i=instance["id"]: manager.instance(i)["status"] != "healthy")
            instance = manager.wait_status(instance["id"], "healthy")
            assert instance["restarts"] == restart
            assert instance["started_at"] - killed >= delay, "restart must wait the (backed-off) delay"
        kill_llama(request, runtime, instance)
        failed = manager.wait_status(instance["id"], "failed", timeout=30)
        assert "killed" in failed["error"] or "137" in failed["error"] or "exited" in failed["error"]
        assert len(failed["error"].splitlines()) > 1, "the reason carries the last log lines"
        with pytest.raises(requests.ConnectionError):
            chat(instance["port"], manager.key)
    finally:
        manager.app.kill()


def test_crash_mid_stream_ends_the_client_stream(request, tmp_path, models_dir, model_path, runtime):
    env = runtime_env(runtime, request, models_dir, ports=23200)
    manager = start_manager(tmp_path, env)
    try:
        instance = manager.wait_status(manager.launch(model_path, auto_restart=False)["id"], "healthy")
        response = chat(instance["port"], manager.key, max_tokens=4000)
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith(b"data:"))
        kill_llama(request, runtime, instance)
        rest = [line for line in lines if line]  # ends (a hang would trip the test timeout)
        assert rest and b"error" in rest[-1], "the stream ends with an error event, not [DONE]"
        assert manager.wait_status(instance["id"], "failed", timeout=30)["error"]
    finally:
        manager.app.kill()


def test_manager_kill9_adopts_running_instances(request, tmp_path, models_dir, model_path, runtime):
    env = runtime_env(runtime, request, models_dir, ports=23400)
    manager = start_manager(tmp_path / "a", env)
    other_env = {**runtime_env(runtime, request, models_dir, ports=23600), "LLAMAMAN_NODE_NAME": "other-node"}
    other = start_manager(tmp_path / "b", other_env)
    try:
        first = manager.launch(model_path)
        second = manager.launch(model_path)
        sleeper = manager.launch(model_path, idle_timeout_min=0.02)
        foreign = other.wait_status(other.launch(model_path)["id"], "healthy")
        before = {i: manager.wait_status(i, "healthy") for i in (first["id"], second["id"])}
        manager.wait_status(sleeper["id"], "sleeping", timeout=30)
        wait_until(lambda: manager.instance(sleeper["id"])["runtime"] is None)
        manager.app.kill()

        manager = start_manager(tmp_path / "a", env)
        for instance_id, old in before.items():
            now = manager.wait_status(instance_id, "healthy", timeout=60)
            assert now["port"] == old["port"]
            assert now["runtime"]["handle"] == old["runtime"]["handle"], "adopted, not relaunched"
            assert chat(now["port"], manager.key, stream=False).status_code == 200
        assert other.instance(foreign["id"])["status"] == "healthy"
        assert chat(foreign["port"], other.key, stream=False).status_code == 200
        assert manager.instance(sleeper["id"])["status"] == "sleeping"
        assert chat(sleeper["port"], manager.key, stream=False).status_code == 200, "it wakes on request"
    finally:
        manager.app.kill()
        other.app.kill()


def test_orphans_of_this_node_are_removed_on_start(request, tmp_path, models_dir, model_path, runtime):
    env = {**runtime_env(runtime, request, models_dir, ports=23800), "LLAMAMAN_NODE_NAME": f"orphans-{runtime}"}
    lost = start_manager(tmp_path / "lost", env)  # same node name, but its records will be gone
    orphan = lost.wait_status(lost.launch(model_path)["id"], "healthy")
    lost.app.kill()
    manager = start_manager(tmp_path / "fresh", env)
    try:
        handle = orphan["runtime"]["handle"]
        if runtime == "process":
            wait_until(lambda: not _alive(int(handle)), timeout=30)
        else:
            client = request.getfixturevalue("docker_client")
            wait_until(lambda: not client.containers.list(all=True, filters={"id": handle}), timeout=30)
        assert manager.api.get(manager.url("/api/instances")).json() == []
    finally:
        manager.app.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return False
