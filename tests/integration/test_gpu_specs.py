"""The llama-server container spec per GPU vendor, as the real engine records it.

Each spec is CREATED (never started) against the test engine and read back with inspect. On this
engine (20.10) create accepts every GPU spec even where the host has no such GPU: a missing
/dev/kfd or /dev/dri is only refused at start ("error gathering device information"), and an
NVIDIA device request without the NVIDIA runtime also fails at start ("could not select device
driver"). So what can be verified without the hardware is exactly what reaches the engine.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from llamaman.config import Config
from llamaman.runtime.docker_spec import DockerHost, create_kwargs
from tests.helpers import TEST_LABELS, make_spec

GROUPS = ("44", "109")  # numeric gids, as detect.gpu_groups() finds them on the host's nodes


@pytest.fixture
def create(docker_client, llama_image, tmp_path):
    """Create (not start) a container for a vendor; return its inspect data; remove it after."""
    made = []
    models, logs = tmp_path / "models", tmp_path / "logs"

    def create_for(vendor: str | None, devices: str = "", **settings: object) -> dict:
        config = Config.from_env({
            "LLAMAMAN_NODE_NAME": "gpu-spec", "MODELS_DIR": str(models), "LOGS_DIR": str(logs),
            "HOST_MODELS_DIR": str(tmp_path / "host-models"), "HOST_LOGS_DIR": str(tmp_path / "host-logs"),
            "LLAMA_NETWORK": "bridge", "LLAMA_CONTAINER_PREFIX": "llamaman-gpuspec-",
            "LLAMA_GPU_DEVICES": devices,
        })
        model = models / "m.gguf"
        spec = make_spec(config, model, f"{vendor or 'cpu'}{len(made)}{id(made) % 10000}", **settings)
        host = DockerHost(image=llama_image, vendor=vendor, in_docker=False, cpus=2, gpu_groups=GROUPS)
        kwargs = create_kwargs(spec, config, host, TEST_LABELS)
        container = docker_client.containers.create(**kwargs)
        made.append(container)
        container.reload()
        assert container.status == "created"
        return container.attrs

    yield create_for
    for container in made:
        container.remove(force=True)


def devices_of(attrs: dict) -> list[tuple[str, str, str]]:
    return [(d["PathOnHost"], d["PathInContainer"], d["CgroupPermissions"])
            for d in attrs["HostConfig"].get("Devices") or []]


def env_of(attrs: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in attrs["Config"]["Env"])


def test_nvidia_requests_every_gpu_through_the_nvidia_driver(create):
    attrs = create("cuda", n_gpu_layers=99)
    (request,) = attrs["HostConfig"]["DeviceRequests"]
    assert request["Driver"] == "nvidia" and request["Capabilities"] == [["gpu"]]
    assert request["Count"] == -1 and not request["DeviceIDs"]
    assert not devices_of(attrs) and not attrs["HostConfig"].get("GroupAdd")


def test_nvidia_gpu_devices_become_device_ids(create):
    attrs = create("cuda", devices="1,3", n_gpu_layers=99)
    (request,) = attrs["HostConfig"]["DeviceRequests"]
    assert request["DeviceIDs"] == ["1", "3"] and request["Count"] == 0


def test_amd_gets_kfd_dri_groups_and_visible_devices(create):
    attrs = create("rocm", devices="0,2", n_gpu_layers=99)
    assert devices_of(attrs) == [("/dev/kfd", "/dev/kfd", "rwm"), ("/dev/dri", "/dev/dri", "rwm")]
    assert attrs["HostConfig"]["GroupAdd"] == list(GROUPS)
    assert env_of(attrs)["ROCR_VISIBLE_DEVICES"] == "0,2"
    assert not attrs["HostConfig"].get("DeviceRequests")


def test_amd_without_gpu_devices_sees_every_gpu(create):
    attrs = create("rocm", n_gpu_layers=99)
    assert "ROCR_VISIBLE_DEVICES" not in env_of(attrs)


def test_intel_gets_dri_and_groups(create):
    attrs = create("intel", n_gpu_layers=99)
    assert devices_of(attrs) == [("/dev/dri", "/dev/dri", "rwm")]
    assert attrs["HostConfig"]["GroupAdd"] == list(GROUPS)
    assert not attrs["HostConfig"].get("DeviceRequests")


@pytest.mark.parametrize("vendor", ["cuda", "rocm", "intel", None])
def test_gpu_layers_zero_or_cpu_host_attaches_no_gpu(create, vendor):
    attrs = create(vendor, n_gpu_layers=0) if vendor else create(None, n_gpu_layers=99)
    host = attrs["HostConfig"]
    assert not host.get("DeviceRequests") and not devices_of(attrs) and not host.get("GroupAdd")
    assert "ROCR_VISIBLE_DEVICES" not in env_of(attrs)


def test_model_and_logs_bind_the_host_paths(create, tmp_path: Path):
    attrs = create("cuda", n_gpu_layers=99)
    binds = sorted(attrs["HostConfig"]["Binds"])
    assert binds == sorted([f"{tmp_path}/host-models:/models:ro", f"{tmp_path}/host-logs:/logs:rw"])
