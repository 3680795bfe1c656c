"""The container create-kwargs builder: volumes, labels, ports, limits and GPUs per vendor."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker.types import DeviceRequest

from llamaman.config import Config
from llamaman.errors import Invalid
from llamaman.runtime.base import LaunchSpec
from llamaman.runtime.docker_spec import (
    DockerHost,
    container_model_path,
    create_kwargs,
    gpu_options,
)
from llamaman.runtime.launch_settings import LaunchSettings

GIB = 1024**3


def make_config(**env: str) -> Config:
    base = {
        "LLAMAMAN_NODE_NAME": "srv1",
        "MODELS_DIR": "/models",
        "LOGS_DIR": "/data/logs",
        "HOST_MODELS_DIR": "/srv/llm/models",
        "HOST_LOGS_DIR": "/srv/llm/logs",
    }
    return Config.from_env({**base, **env})


def make_spec(**settings: object) -> LaunchSpec:
    return LaunchSpec(
        instance_id="abcd1234",
        node="srv1",
        model_path=Path("/models/org/m.gguf"),
        internal_port=9003,
        api_key="k-secret",
        settings=LaunchSettings(**settings),
        log_path=Path("/data/logs/abcd1234.log"),
    )


def build(host: DockerHost | None = None, config: Config | None = None, **settings: object) -> dict:
    host = host or DockerHost(image="img:cpu", vendor=None, in_docker=False, cpus=8)
    return create_kwargs(
        make_spec(**settings), config or make_config(), host, {"llamaman.test": "1"}
    )


def test_bare_metal_container() -> None:
    kwargs = build()
    assert kwargs["image"] == "img:cpu"
    assert kwargs["name"] == "llamaman-abcd1234"
    assert kwargs["network"] == "llamaman-net"
    assert kwargs["command"][:6] == [
        "--model",
        "/models/org/m.gguf",
        "--host",
        "0.0.0.0",
        "--port",
        "9003",
    ]
    assert kwargs["environment"] == {"LLAMA_API_KEY": "k-secret"}
    assert kwargs["ports"] == {"9003/tcp": ("127.0.0.1", 9003)}
    assert kwargs["volumes"] == {
        "/srv/llm/models": {"bind": "/models", "mode": "ro"},
        "/srv/llm/logs": {"bind": "/logs", "mode": "rw"},
    }
    assert kwargs["log_config"].type == "json-file"
    for absent in ("nano_cpus", "mem_limit", "device_requests", "devices", "group_add"):
        assert absent not in kwargs


def test_labels_identify_instance_and_node() -> None:
    assert build()["labels"] == {
        "llamaman.test": "1",
        "llamaman.managed": "1",
        "llamaman.instance_id": "abcd1234",
        "llamaman.node": "srv1",
        "llamaman.internal_port": "9003",
        "llamaman.log_path": "/data/logs/abcd1234.log",
        "llamaman.model": "/models/org/m.gguf",
    }


def test_in_docker_publishes_nothing() -> None:
    kwargs = build(DockerHost(image="img", vendor=None, in_docker=True))
    assert "ports" not in kwargs
    assert kwargs["network"] == "llamaman-net"


def test_prefix_and_network_come_from_config() -> None:
    kwargs = build(config=make_config(LLAMA_CONTAINER_PREFIX="ll-", LLAMA_NETWORK="n2"))
    assert (kwargs["name"], kwargs["network"]) == ("ll-abcd1234", "n2")


def test_threads_set_quota_and_flag() -> None:
    kwargs = build(threads=3)
    assert kwargs["nano_cpus"] == 3_000_000_000
    assert kwargs["command"][kwargs["command"].index("--threads") + 1] == "3"


def test_quota_is_capped_to_the_engine_cpus_but_threads_are_kept() -> None:
    kwargs = build(DockerHost(image="i", vendor=None, in_docker=False, cpus=2), threads=16)
    assert kwargs["nano_cpus"] == 2_000_000_000
    assert "16" in kwargs["command"]


def test_memory_limit() -> None:
    assert build(memory_limit=32 * GIB)["mem_limit"] == 32 * GIB


def test_model_outside_models_dir_is_refused() -> None:
    with pytest.raises(Invalid, match="not inside MODELS_DIR"):
        container_model_path(Path("/etc/passwd"), Path("/models"))
    with pytest.raises(Invalid, match="not inside MODELS_DIR"):
        container_model_path(Path("/models/../etc/passwd"), Path("/models"))
    with pytest.raises(Invalid, match="MODELS_DIR itself"):
        container_model_path(Path("/models"), Path("/models/"))


def nvidia(**settings: object) -> dict:
    return build(DockerHost(image="img:cuda", vendor="cuda", in_docker=False), **settings)


def test_nvidia_all_gpus() -> None:
    (request,) = nvidia()["device_requests"]
    assert request == DeviceRequest(driver="nvidia", count=-1, capabilities=[["gpu"]])


def test_nvidia_selected_gpus() -> None:
    (request,) = nvidia(gpu_devices=(0, 2))["device_requests"]
    assert request["DeviceIDs"] == ["0", "2"]
    assert request["Count"] == 0


def test_nvidia_global_default_devices() -> None:
    kwargs = build(
        DockerHost(image="i", vendor="cuda", in_docker=False), make_config(LLAMA_GPU_DEVICES="1,3")
    )
    assert kwargs["device_requests"][0]["DeviceIDs"] == ["1", "3"]
    kwargs = build(
        DockerHost(image="i", vendor="cuda", in_docker=False),
        make_config(LLAMA_GPU_DEVICES="1,3"),
        gpu_devices=(0,),
    )
    assert kwargs["device_requests"][0]["DeviceIDs"] == ["0"]


@pytest.mark.parametrize("vendor", ["cuda", "rocm", "intel"])
def test_gpu_layers_zero_attaches_no_gpu(vendor: str) -> None:
    kwargs = build(
        DockerHost(image="i", vendor=vendor, in_docker=False), n_gpu_layers=0, gpu_devices=(1,)
    )
    for absent in ("device_requests", "devices", "group_add"):
        assert absent not in kwargs
    assert kwargs["environment"] == {"LLAMA_API_KEY": "k-secret"}


def test_amd() -> None:
    host = DockerHost(image="img:rocm", vendor="rocm", in_docker=False, gpu_groups=("44", "993"))
    kwargs = build(host, gpu_devices=(1,))
    assert kwargs["devices"] == ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"]
    assert kwargs["group_add"] == ["44", "993"]
    assert kwargs["environment"] == {"LLAMA_API_KEY": "k-secret", "ROCR_VISIBLE_DEVICES": "1"}
    assert "device_requests" not in kwargs


def test_amd_all_gpus_sets_no_visibility() -> None:
    kwargs = build(DockerHost(image="i", vendor="rocm", in_docker=False))
    assert "ROCR_VISIBLE_DEVICES" not in kwargs["environment"]
    assert kwargs["group_add"] == ["video", "render"]


def test_intel() -> None:
    kwargs = build(DockerHost(image="img:sycl", vendor="intel", in_docker=False))
    assert kwargs["devices"] == ["/dev/dri:/dev/dri:rwm"]
    assert "device_requests" not in kwargs


def test_intel_refuses_gpu_devices() -> None:
    with pytest.raises(Invalid, match="Intel Arc"):
        build(DockerHost(image="i", vendor="intel", in_docker=False), gpu_devices=(0,))


def test_cpu_host_gets_no_gpu() -> None:
    assert gpu_options(None, -1, (0,), ("video",)) == {}
