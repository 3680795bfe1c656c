"""The stale-record check against real runtimes (native processes, Docker containers), a real model.

What the product should do when a llama-server dies behind the manager's back: when the
runtime reports the exit, crash recovery decides (restart or fail) and the check must not
overrule it; when the exit was never reported, the check marks the record stopped. Strays of
this node are stopped, another node's llama-servers and sleeping instances are left alone.
"""
from __future__ import annotations

import itertools
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import psutil
import pytest

from llamaman.runtime import LaunchSettings, LaunchSpec, RuntimeRef
from tests.appkit import make_app
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(300)
SMALL = {"ctx_size": 512, "threads": 1, "parallel": 1, "n_gpu_layers": 0}
LOG_ENV = "LLAMAMAN_LOG_PATH"
NETWORK = "llamaman-e2e-net"  # the e2e tests' network: one is enough
HOURS = itertools.count(1)


def wait_until(check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def kill_own_servers(base: Path) -> None:
    """SIGKILL the llama-servers whose log lies under this test's temp dir (ours only)."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(LOG_ENV, "").startswith(str(base)):
                proc.kill()
        except (psutil.Error, OSError):
            continue


@pytest.fixture(params=["process", "docker"])
def runtime(request, tmp_path):
    """The runtime's environment; what it leaves behind is removed when the test ends."""
    if request.param == "process":
        yield {"LLAMAMAN_RUNTIME": "process", "LLAMA_SERVER_BIN": request.getfixturevalue("llama_server_bin")}
        kill_own_servers(tmp_path)
        return
    docker_client = request.getfixturevalue("docker_client")
    prefix = f"llamaman-cleanup-{uuid.uuid4().hex[:6]}-"  # this test's containers only
    yield {"LLAMAMAN_RUNTIME": "docker", "LLAMA_IMAGE": request.getfixturevalue("llama_image"),
           "LLAMAMAN_IN_DOCKER": "false", "LLAMA_HOST_ADDR": "127.0.0.1",
           "LLAMA_CONTAINER_PREFIX": prefix, "LLAMA_NETWORK": NETWORK}
    for container in docker_client.containers.list(all=True, filters={"name": prefix}):
        container.remove(force=True)


@pytest.fixture
def svc(tmp_path, runtime, models_dir):
    """A started app on a real runtime; the background tick is stopped, ticks are manual."""
    app = make_app(tmp_path, LLAMAMAN_NODE_NAME=f"reconcile-{uuid.uuid4().hex[:8]}", MODELS_DIR=str(models_dir),
                   PORT_RANGE_START="24600", PORT_RANGE_END="24619",
                   INTERNAL_PORT_RANGE_START="24700", INTERNAL_PORT_RANGE_END="24719", **runtime)
    services = app.extensions["llamaman"]
    services.cleanup.stop()
    services.settings.save({"cleanup": {"downloads_enabled": False, "instances_enabled": False,
                                        "stale_records_enabled": True, "stale_records_interval_min": 1}})
    yield services
    for record in services.instances.registry.all():
        services.instances.stop(record["id"])
    services.stop()


def launch(svc, model_path: Path, **fields) -> dict:
    """Launch through the instance service and wait until it is healthy."""
    instance_id = svc.instances.launch({"model_path": str(model_path), **SMALL, **fields})["id"]
    record = svc.instances.registry.wait_until(instance_id, lambda r: r["status"] in ("healthy", "failed"), 120)
    assert record and record["status"] == "healthy", svc.instances.logs.path(instance_id).read_text()
    return record


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def kill(request, record: dict) -> RuntimeRef:
    """SIGKILL the record's llama-server behind the manager's back."""
    ref = RuntimeRef.from_dict(record["runtime"])
    if ref.kind == "process":
        os.kill(int(ref.handle), signal.SIGKILL)
    else:
        request.getfixturevalue("docker_client").containers.get(ref.handle).kill()
    return ref


def spawn(svc, tmp_path: Path, model_path: Path, instance_id: str, node: str) -> RuntimeRef:
    """A llama-server started through the runtime but behind the instance service's back."""
    spec = LaunchSpec(instance_id=instance_id, node=node, model_path=model_path, internal_port=free_port(),
                      api_key="stray-key", settings=LaunchSettings.from_body(SMALL),
                      log_path=tmp_path / "logs" / f"{instance_id}.log")
    ref = svc.instances.runtime.launch(spec)
    assert svc.instances.runtime.state(ref).running
    return ref


def tick(svc) -> dict:
    """A cleanup tick with the stale-record check due: the clock is past its interval again."""
    at = time.time() + 3600 * next(HOURS)
    svc.cleanup.clock = lambda: at
    return svc.cleanup.tick()


@pytest.mark.timeout(150)  # the failure mode is a deadlock: the check waiting on the lock we hold
def test_a_reported_crash_is_left_to_crash_recovery(request, svc, model_path):
    record = launch(svc, model_path, auto_restart=True, max_restarts=1, restart_delay=0)
    # Crash recovery waits for this lock, so the check runs while the record still says
    # healthy with a dead llama-server: the race it must not act in.
    with svc.instances.registry.op_lock(record["id"]):
        ref = kill(request, record)
        wait_until(lambda: not svc.instances.runtime.state(ref).running)
        assert tick(svc) == {"stale_records": 0}
        assert svc.instances.get(record["id"])["status"] == "healthy"
    back = svc.instances.registry.wait_until(record["id"], lambda r: r["status"] == "healthy"
                                             and r["runtime"]["handle"] != ref.handle, 120)
    assert back is not None, svc.instances.get(record["id"])
    assert back["restarts"] == 1, "crash recovery restarted it"
    assert tick(svc) == {"stale_records": 0}, "the crash it saw was recovered: nothing to mark"
    assert svc.instances.get(record["id"])["status"] == "healthy"


def test_a_lost_instance_is_marked_stopped_and_strays_are_removed(request, svc, tmp_path, model_path):
    sleeper = launch(svc, model_path)
    assert svc.instances.sleep(sleeper["id"])
    running = launch(svc, model_path)
    lost = launch(svc, model_path, auto_restart=True)
    svc.instances.runtime.set_exit_listener(None)  # the runtime's report of the next exit is lost
    lost_ref = kill(request, lost)
    wait_until(lambda: not svc.instances.runtime.state(lost_ref).running)
    stray = spawn(svc, tmp_path, model_path, "stray1", svc.config.node_name)
    foreign = spawn(svc, tmp_path, model_path, "foreign1", "another-node")

    assert tick(svc) == {"stale_records": 1}, "the stray goes at once"
    assert not svc.instances.runtime.state(stray).running, "a stray of this node is stopped"
    assert svc.instances.get(lost["id"])["status"] == "healthy", "found gone once: not marked yet"
    before = time.time()
    assert tick(svc) == {"stale_records": 1}, "still gone on the next run: marked stopped"

    marked = svc.instances.get(lost["id"])
    assert marked["status"] == "stopped" and "gone" in marked["error"], marked
    assert port_answers(running["port"]) and not port_answers(lost["port"]), "its public port is released"
    assert svc.instances.runtime.state(foreign).running, "another node's llama-server is not ours"
    assert svc.instances.get(sleeper["id"])["status"] == "sleeping", "sleeping instances run nothing by design"
    assert svc.instances.get(running["id"])["status"] == "healthy"
    assert svc.instances.runtime.state(RuntimeRef.from_dict(running["runtime"])).running
    stamp = svc.settings.get()["cleanup"]["stale_records_last_run_at"]
    assert stamp == svc.cleanup.clock() and stamp >= before
    svc.instances.runtime.stop(foreign)
