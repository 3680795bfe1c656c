"""Pure construction of a llama-server container: given a launch spec, the config and
facts about the Docker host, return the keyword arguments for `containers.create`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest, LogConfig

from llamaman.config import Config
from llamaman.errors import Invalid
from llamaman.runtime.args import API_KEY_ENV, build_args
from llamaman.runtime.base import LaunchSpec, model_relative_path

CONTAINER_MODELS_DIR = "/models"
CONTAINER_LOGS_DIR = "/logs"
LISTEN_ALL = "0.0.0.0"  # inside the container; what is reachable is decided by publishing
PUBLISH_HOST = "127.0.0.1"

LABEL_MANAGED = "llamaman.managed"
LABEL_INSTANCE = "llamaman.instance_id"
LABEL_NODE = "llamaman.node"
LABEL_PORT = "llamaman.internal_port"
LABEL_LOG = "llamaman.log_path"
LABEL_MODEL = "llamaman.model"

# The manager copies container output into the instance log; Docker's own copy is only
# the buffer it reads from, so it is capped instead of growing for the container's life.
DOCKER_LOG = LogConfig(type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "2"})


@dataclass(frozen=True)
class DockerHost:
    """What the builder needs to know about the Docker host (detected once per runtime)."""

    image: str
    vendor: str | None  # "cuda" | "rocm" | "intel" | None
    in_docker: bool
    cpus: int | None = None  # the engine's CPU count; CPU quotas are capped to it
    gpu_groups: tuple[str, ...] = ("video", "render")


def container_name(prefix: str, instance_id: str) -> str:
    """Return the container name: LLAMA_CONTAINER_PREFIX followed by the instance id."""
    return f"{prefix}{instance_id}"


def container_model_path(model_path: Path, models_dir: Path) -> str:
    """Map a model path inside MODELS_DIR onto the models volume inside the container."""
    return f"{CONTAINER_MODELS_DIR}/{model_relative_path(model_path, models_dir).as_posix()}"


def instance_labels(spec: LaunchSpec, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the labels that let a restarted manager find and adopt this container."""
    return {
        **(extra or {}),
        LABEL_MANAGED: "1",
        LABEL_INSTANCE: spec.instance_id,
        LABEL_NODE: spec.node,
        LABEL_PORT: str(spec.internal_port),
        LABEL_LOG: str(spec.log_path),
        LABEL_MODEL: str(spec.model_path),
    }


def create_kwargs(
    spec: LaunchSpec,
    config: Config,
    host: DockerHost,
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return the `containers.create` keyword arguments for this launch."""
    settings = spec.settings
    model = container_model_path(spec.model_path, config.models_dir)
    kwargs: dict[str, Any] = {
        "image": host.image,
        "name": container_name(config.container_prefix, spec.instance_id),
        "command": build_args(settings, model=model, host=LISTEN_ALL, port=spec.internal_port),
        "environment": {**spec.environment, API_KEY_ENV: spec.api_key},  # the internal key wins
        "labels": instance_labels(spec, extra_labels),
        "network": config.llama_network,
        "volumes": {
            str(config.host_models_dir): {"bind": CONTAINER_MODELS_DIR, "mode": "ro"},
            str(config.host_logs_dir): {"bind": CONTAINER_LOGS_DIR, "mode": "rw"},
        },
        "log_config": DOCKER_LOG,
    }
    if spec.command_override:
        kwargs["entrypoint"] = [spec.command_override]  # a path inside the image
    if not host.in_docker:
        kwargs["ports"] = {f"{spec.internal_port}/tcp": (PUBLISH_HOST, spec.internal_port)}
    if settings.threads is not None:
        cores = min(settings.threads, host.cpus) if host.cpus else settings.threads
        kwargs["nano_cpus"] = int(cores * 1_000_000_000)
    if settings.memory_limit is not None:
        kwargs["mem_limit"] = settings.memory_limit
    _merge_gpu(
        kwargs,
        gpu_options(host.vendor, settings.n_gpu_layers, _devices(spec, config), host.gpu_groups),
    )
    return kwargs


def gpu_options(
    vendor: str | None, n_gpu_layers: int, devices: tuple[int, ...] | None, groups: tuple[str, ...]
) -> dict[str, Any]:
    """Return the GPU part of the container: none at all for CPU hosts or GPU Layers 0."""
    if n_gpu_layers == 0 or vendor is None:
        return {}
    if vendor == "cuda":
        ids = {"device_ids": [str(d) for d in devices]} if devices else {"count": -1}
        return {"device_requests": [DeviceRequest(driver="nvidia", capabilities=[["gpu"]], **ids)]}
    if vendor == "rocm":
        options: dict[str, Any] = {
            "devices": ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"],
            "group_add": list(groups),
        }
        if devices:
            options["environment"] = {"ROCR_VISIBLE_DEVICES": ",".join(map(str, devices))}
        return options
    if vendor == "intel":
        if devices:
            raise Invalid("GPU Devices is not supported on Intel Arc: leave it empty (all GPUs)")
        return {"devices": ["/dev/dri:/dev/dri:rwm"], "group_add": list(groups)}
    raise Invalid(f"unknown GPU vendor {vendor!r}")


def _devices(spec: LaunchSpec, config: Config) -> tuple[int, ...] | None:
    """The instance's GPU Devices, else LLAMA_GPU_DEVICES, else None (all GPUs)."""
    return spec.settings.gpu_devices or config.gpu_devices


def _merge_gpu(kwargs: dict[str, Any], gpu: dict[str, Any]) -> None:
    environment = gpu.pop("environment", {})
    kwargs["environment"].update(environment)
    kwargs.update(gpu)
