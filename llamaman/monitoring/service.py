"""The monitor: samples GPU and system readings on background jobs; requests read the cache.

NVML, psutil, sysfs and Docker are only touched by the jobs, so a dashboard polling every
second costs a dict lookup. Each cached reading is replaced whole (one reference assignment),
so readers never see a half-written one and no lock is needed. The jobs pause while nobody has
asked for a reading for WATCH_WINDOW_S, so an idle manager spends nothing on sampling.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamaman.config import Config
from llamaman.instances import records as rec
from llamaman.instances.service import InstanceService
from llamaman.monitoring import cgroup
from llamaman.monitoring.gpu import GpuHost, GpuSampler, detect_host
from llamaman.monitoring.gpu_nvml import NvmlReader
from llamaman.monitoring.system import MB, SystemSampler
from llamaman.periodic import PeriodicJob
from llamaman.runtime import detect

log = logging.getLogger(__name__)

GPU_INTERVAL_S = 5.0  # the page header polls every 5 s
SYSTEM_INTERVAL_S = 2.0
WATCH_WINDOW_S = 30.0  # sampling pauses once nobody has asked for a reading for this long
PENDING = "the first reading has not been taken yet"
_USING_GPU = frozenset({rec.STARTING, rec.HEALTHY})


class Monitor:
    """Background GPU and CPU/RAM sampling with cached readings for the API."""

    def __init__(self, config: Config, instances: InstanceService, root: Path = detect.ROOT,
                 gpu_interval_s: float = GPU_INTERVAL_S, system_interval_s: float = SYSTEM_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._asked_at = clock()  # counts as asked at start: the first dashboard finds a reading
        self.instances = instances
        self.root = root
        self.nvml = NvmlReader()
        self._gpu_sampler: GpuSampler | None = None
        self._system_sampler: SystemSampler | None = None
        self._gpu: dict[str, Any] | None = None
        self._system: dict[str, Any] | None = None
        self._jobs = [PeriodicJob("gpu-monitor", gpu_interval_s, self.sample_gpus),
                      PeriodicJob("system-monitor", system_interval_s, self.sample_system)]

    def start(self) -> None:
        """Start sampling (the first readings are taken at once, off the caller's thread)."""
        for job in self._jobs:
            job.start()

    def stop(self) -> None:
        """Stop sampling and release NVML."""
        for job in self._jobs:
            job.stop()
        self.nvml.close()

    # -- sampling (background jobs)

    def watched(self) -> bool:
        """Whether someone asked for a reading recently enough to keep sampling."""
        return self.clock() - self._asked_at <= WATCH_WINDOW_S

    def sample_gpus(self) -> None:
        """Take one GPU reading (detecting the vendor on first use); skipped while unwatched."""
        if self._gpu is not None and not self.watched():
            return
        if self._gpu_sampler is None:
            host = detect_host(self.config, self.root)
            log.info("GPU vendor %s (%s), image %s", host.vendor or "none", host.vendor_source, host.image)
            self._gpu_sampler = GpuSampler(host, self.nvml, self._running_container, self.root)
        self._gpu = self._gpu_sampler.sample()

    def sample_system(self) -> None:
        """Take one CPU/RAM reading (finding the manager's cgroup on first use); skipped while
        unwatched (psutil's CPU percent then covers the whole pause, which is still right)."""
        if self._system is not None and not self.watched():
            return
        if self._system_sampler is None:
            group = cgroup.cgroup_of("self", self.root) if self._in_container() else None
            self._system_sampler = SystemSampler(group)
        self._system = self._system_sampler.sample()

    def _in_container(self) -> bool:
        return detect.detect_in_docker(self.config.in_docker, self.root)

    def _running_container(self) -> Any:
        """A healthy llama-server container of this node, for the nvidia-smi/rocm-smi fallback."""
        runtime = self.instances.runtime
        if runtime.kind != "docker":
            return None
        for view in self.instances.list():
            handle = (view.get("runtime") or {}).get("handle")
            if view["status"] == rec.HEALTHY and handle:
                return runtime.client().containers.get(handle)
        return None

    # -- cached views (request path)

    def gpu_info(self) -> dict[str, Any]:
        """The latest GPU reading, each GPU with the instances assigned to it."""
        self._asked_at = self.clock()
        reading = self._gpu or {"gpus": [], "source": "pending", "reason": PENDING, "sampled_at": None}
        host: GpuHost | None = self._gpu_sampler.host if self._gpu_sampler else None
        users = self._gpu_users([g["index"] for g in reading["gpus"]])
        body = {"gpus": [_gpu_view(g, users.get(g["index"], [])) for g in reading["gpus"]],
                "source": reading["source"], "reason": reading["reason"],
                **(host.to_json() if host else {"vendor": None, "vendor_source": None, "image": None,
                                                "image_auto": None}),
                "sampled_at": reading["sampled_at"]}
        if not body["gpus"]:
            body["error"] = reading["reason"]  # LlamaMan 1.2.1 clients read "error" when there is no GPU
        return body

    def system_info(self) -> dict[str, Any]:
        """The latest CPU/RAM reading."""
        self._asked_at = self.clock()
        if self._system is None:
            return {"cpu_percent": None, "cpu_cores": None, "ram_total_mb": None, "ram_used_mb": None,
                    "sampled_at": None, "error": PENDING}
        return self._system

    def _gpu_users(self, indices: list[int]) -> dict[int, list[dict[str, Any]]]:
        """Loading or loaded instances per GPU index (no gpu_devices: every GPU)."""
        users: dict[int, list[dict[str, Any]]] = {}
        for view in self.instances.list():
            if view["status"] not in _USING_GPU:
                continue
            assigned = rec.assigned_gpus(view, self.config.gpu_devices)
            for index in indices if assigned is None else assigned:
                users.setdefault(index, []).append(
                    {"id": view["id"], "name": view["name"], "model_name": view["model_name"],
                     "status": view["status"]})
        return users


def _gpu_view(gpu: dict[str, Any], instances: list[dict[str, Any]]) -> dict[str, Any]:
    total, used = gpu.get("memory_total_bytes"), gpu.get("memory_used_bytes")
    free = max(total - used, 0) if total is not None and used is not None else None
    return {**gpu, "memory_free_bytes": free, "memory_total_mb": _mb(total), "memory_used_mb": _mb(used),
            "memory_free_mb": _mb(free), "instances": instances}


def _mb(value: int | None) -> int | None:
    return value // MB if value is not None else None
