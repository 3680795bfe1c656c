"""GET /api/gpu-info and /api/system-info on a started app; the cgroup reader and the in-container
GPU fallback against a real container of the test engine."""
from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from llamaman.monitoring import cgroup as cg
from llamaman.monitoring.gpu import GpuSampler, detect_host
from llamaman.monitoring.gpu_nvml import NvmlReader
from llamaman.monitoring.service import Monitor
from llamaman.monitoring.system import SystemSampler
from llamaman.services import build_services
from llamaman.web import create_app
from tests.appkit import create_key, make_app, make_config, setup_admin
from tests.helpers import run_llama_container
from tests.unit.test_monitoring_gpu import GIB, amd_card

MIB = 1024 * 1024
PORTS = {"PORT_RANGE_START": "26610", "PORT_RANGE_END": "26619",
         "INTERNAL_PORT_RANGE_START": "26710", "INTERNAL_PORT_RANGE_END": "26719"}


def sampled(client, path: str, timeout: float = 10) -> dict:
    """The route's body once the background job has taken its first reading."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).get_json()
        if body.get("sampled_at") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


@pytest.fixture
def admin_app(tmp_path):
    app = make_app(tmp_path, LLAMAMAN_IN_DOCKER="false", LLAMAMAN_RUNTIME="process",
                   LLAMA_SERVER_BIN="/nonexistent/llama-server")
    client = app.test_client()
    token = setup_admin(client)
    yield app, client, token
    app.extensions["llamaman"].stop()


def test_routes_are_management_routes(admin_app):
    app, client, token = admin_app
    admin_key = create_key(client, token, scope="admin", name="a")["key"]
    chat_key = create_key(client, token, name="c")["key"]
    anonymous = app.test_client()
    for path in ("/api/gpu-info", "/api/system-info"):
        assert anonymous.get(path).status_code == 401
        assert anonymous.get(path, headers={"Authorization": f"Bearer {chat_key}"}).status_code == 403
        assert anonymous.get(path, headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200
        refused = client.post(path, json={}, headers={"X-CSRF-Token": token})
        assert refused.status_code == 405 and "error" in refused.get_json()


def test_system_info_matches_psutil(admin_app):
    _, client, _ = admin_app
    body = sampled(client, "/api/system-info?_=123")  # a browser's cache-buster is ignored
    vm = psutil.virtual_memory()
    assert body["cpu_count"] == body["cpu_cores"] == psutil.cpu_count()
    assert body["ram_total_bytes"] == vm.total and body["ram_total_mb"] == round(vm.total / MIB)
    assert abs(body["ram_used_bytes"] - (vm.total - vm.available)) < 0.1 * vm.total
    assert body["ram_used_mb"] + body["ram_free_mb"] in (body["ram_total_mb"], body["ram_total_mb"] + 1)
    assert 0 <= body["cpu_percent"] <= 100 and body["ram_percent"] == pytest.approx(
        100 * body["ram_used_bytes"] / vm.total, abs=0.1)
    assert body["in_container"] is False and body["cpu_quota_cores"] is None


def test_gpu_info_without_a_gpu_is_an_empty_list_and_the_reason(admin_app):
    _, client, _ = admin_app
    body = sampled(client, "/api/gpu-info")
    assert body["gpus"] == [] and body["source"] == "none" and body["vendor"] is None
    assert body["reason"].startswith("no GPU detected") and body["error"] == body["reason"]
    assert body["image"] == "ghcr.io/ggml-org/llama.cpp:server" and body["image_auto"] is True


def test_gpu_info_names_the_instances_using_each_gpu(tmp_path, llama_server_bin, model_path):
    sysfs = tmp_path / "host"
    amd_card(sysfs, 0, 16 * GIB, 2 * GIB, 50, 60000)
    amd_card(sysfs, 1, 8 * GIB, GIB, 10, None)
    config = make_config(tmp_path, LLAMAMAN_IN_DOCKER="false", LLAMAMAN_RUNTIME="process",
                         LLAMA_SERVER_BIN=llama_server_bin, MODELS_DIR=str(model_path.parent), **PORTS)
    services = build_services(config)
    services.monitor = Monitor(config, services.instances, root=sysfs)
    app = create_app(config, services)
    services.start()
    client = app.test_client()
    headers = {"X-CSRF-Token": setup_admin(client)}
    small = {"model_path": str(model_path), "ctx_size": 256, "threads": 1, "parallel": 1}
    try:
        pinned = client.post("/api/instances", json={**small, "gpu_devices": "1", "name": "pinned"},
                             headers=headers).get_json()
        every = client.post("/api/instances", json={**small, "name": "every"}, headers=headers).get_json()
        cpu = client.post("/api/instances", json={**small, "n_gpu_layers": 0, "name": "cpu"},
                          headers=headers).get_json()
        body = sampled(client, "/api/gpu-info")
        assert (body["source"], body["vendor"], body["image"]) == (
            "sysfs", "rocm", "ghcr.io/ggml-org/llama.cpp:server-rocm")
        first, second = body["gpus"]
        assert (first["memory_total_mb"], first["memory_used_mb"], first["memory_free_mb"]) == (16384, 2048, 14336)
        assert first["utilization_pct"] == 50 and first["temperature_c"] == 60.0
        assert [i["id"] for i in first["instances"]] == [every["id"]]
        assert sorted(i["id"] for i in second["instances"]) == sorted([pinned["id"], every["id"]])
        assert cpu["id"] not in {i["id"] for g in body["gpus"] for i in g["instances"]}
        assert client.delete(f"/api/instances/{every['id']}", headers=headers).status_code == 200
        after = client.get("/api/gpu-info").get_json()
        assert [i["id"] for i in after["gpus"][1]["instances"]] == [pinned["id"]], "stopped ones hold no GPU"
    finally:
        for instance in client.get("/api/instances").get_json():
            client.delete(f"/api/instances/{instance['id']}", headers=headers)
        services.stop()


@pytest.fixture
def limited_container(docker_client, llama_image, models_dir, model_path):
    container, _ = run_llama_container(docker_client, llama_image, models_dir, model_path.name, "-c", "256",
                                       nano_cpus=500_000_000, mem_limit="256m")
    yield container
    container.remove(force=True)


def test_cgroup_reader_reads_a_real_containers_limits(limited_container):
    limited_container.reload()
    pid = limited_container.attrs["State"]["Pid"]
    group = cg.cgroup_of(pid)
    assert group is not None, f"no cgroup found for pid {pid}"
    assert limited_container.id in str(group.memory), group
    assert cg.cpu_quota_cores(group) == 0.5
    assert cg.memory_limit(group) == 256 * MIB
    assert 0 < cg.memory_working_set(group) <= 256 * MIB
    assert cg.cpu_usage_ns(group) > 0
    reading = SystemSampler(group).sample()
    assert (reading["cpu_cores"], reading["ram_total_bytes"], reading["ram_source"]) == (0.5, 256 * MIB, "cgroup")
    assert reading["ram_total_mb"] == 256 and 0 < reading["ram_used_mb"] <= 256


def test_exec_fallback_in_a_real_container_says_why_it_found_nothing(limited_container, tmp_path: Path):
    host = detect_host(make_config(tmp_path), tmp_path)
    reading = GpuSampler(host, NvmlReader(), lambda: limited_container, tmp_path).sample()
    assert reading["gpus"] == [] and reading["source"] == "none"
    assert f"in container {limited_container.name}: nvidia-smi failed (exit 12" in reading["reason"]
    assert "rocm-smi failed (exit 12" in reading["reason"]


def test_sampling_pauses_while_nobody_asks_and_resumes_on_the_next_ask(tmp_path):
    sysfs = tmp_path / "host"
    amd_card(sysfs, 0, 16 * GIB, 2 * GIB, 50, 60000)
    config = make_config(tmp_path, LLAMAMAN_IN_DOCKER="false", LLAMAMAN_RUNTIME="process",
                         LLAMA_SERVER_BIN="/nonexistent/llama-server", **PORTS)
    now = [1000.0]
    monitor = Monitor(config, build_services(config).instances, root=sysfs, clock=lambda: now[0])
    monitor.sample_gpus()
    monitor.sample_system()
    first_gpu, first_system = monitor.gpu_info()["sampled_at"], monitor.system_info()["sampled_at"]
    assert first_gpu and first_system
    now[0] += 31  # nobody asked for 31 s: the jobs' ticks change nothing
    monitor.sample_gpus()
    monitor.sample_system()
    assert monitor._gpu["sampled_at"] == first_gpu and monitor._system["sampled_at"] == first_system
    (sysfs / "sys/class/drm/card0/device/mem_info_vram_used").write_text(str(3 * GIB))
    assert monitor.gpu_info()["gpus"][0]["memory_used_bytes"] == 2 * GIB  # the cached reading, at once
    monitor.sample_gpus()  # the next tick after an ask samples again
    monitor.sample_system()
    assert monitor.gpu_info()["gpus"][0]["memory_used_bytes"] == 3 * GIB
    assert monitor.system_info()["sampled_at"] > first_system
