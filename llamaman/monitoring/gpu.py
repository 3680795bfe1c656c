"""Which GPU vendor and image this host has, and one GPU reading from the best source.

Sources in order: NVML (NVIDIA), /sys/class/drm (AMD, Intel), then nvidia-smi / rocm-smi run
inside a running llama-server container. No GPU is a reading too: no cards and the reason.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import DockerException
from requests.exceptions import RequestException

from llamaman.config import Config
from llamaman.monitoring.gpu_exec import exec_gpus
from llamaman.monitoring.gpu_nvml import NvmlReader
from llamaman.monitoring.gpu_sysfs import SYSFS_VENDORS, read_drm_gpus
from llamaman.runtime import detect

EXEC_INTERVAL_S = 10.0  # an exec costs a process start in the container: not every tick
DRM_HINT = "no AMD/Intel card in /sys/class/drm (in Docker, mount /sys/class/drm:ro into the llamaman container)"


@dataclass(frozen=True)
class GpuHost:
    """The GPU vendor (cuda, rocm, intel or None), how it was decided, and the image it implies."""

    vendor: str | None
    vendor_source: str  # "GPU_TYPE" or "detected"
    image: str
    image_auto: bool  # False when LLAMA_IMAGE pins it

    def to_json(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "vendor_source": self.vendor_source, "image": self.image,
                "image_auto": self.image_auto}


def detect_host(config: Config, root: Path = detect.ROOT,
                nvml_probe: Callable[[], bool] | None = detect.probe_nvml) -> GpuHost:
    """Detect the vendor (GPU_TYPE wins) and the LLAMA_IMAGE it selects, as the runtime does."""
    vendor = detect.detect_gpu_vendor(config.gpu_type, root, nvml_probe=nvml_probe)
    return GpuHost(vendor, "GPU_TYPE" if config.gpu_type else "detected",
                   detect.choose_image(config.llama_image, vendor), not config.llama_image)


class GpuSampler:
    """Takes GPU readings; `container` returns a running llama-server container (or None)."""

    def __init__(self, host: GpuHost, nvml: NvmlReader, container: Callable[[], Any],
                 root: Path = detect.ROOT, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.nvml = nvml
        self.container = container
        self.root = root
        self._clock = clock
        self._exec_at = -EXEC_INTERVAL_S
        self._exec_result: tuple[list[dict[str, Any]] | None, str | None] = (None, None)

    def sample(self) -> dict[str, Any]:
        """{"gpus": [...], "source": nvml|sysfs|exec|none, "reason": str|None, "sampled_at": ts}."""
        vendor, reasons = self.host.vendor, []
        if vendor in ("cuda", None):
            gpus, why = self.nvml.read()
            if gpus:
                return _reading(gpus, "nvml", None)
            reasons.append(why or "NVML reports no GPU")
        if vendor in (*SYSFS_VENDORS, None):
            gpus = read_drm_gpus(self.root)
            if gpus:
                return _reading(gpus, "sysfs", None)
            reasons.append(DRM_HINT)
        gpus, why = self._exec()
        if gpus:
            return _reading(gpus, "exec", why)
        if why:
            reasons.append(why)
        prefix = "no GPU detected (CPU only)" if vendor is None else f"{vendor} GPU not readable"
        return _reading([], "none", f"{prefix}: " + "; ".join(reasons))

    def _exec(self) -> tuple[list[dict[str, Any]] | None, str | None]:
        """The in-container fallback, re-run at most every EXEC_INTERVAL_S."""
        if self._clock() - self._exec_at < EXEC_INTERVAL_S:
            return self._exec_result
        self._exec_at = self._clock()
        try:
            container = self.container()
            if container is None:
                self._exec_result = (None, "no running llama-server container (Docker runtime) to run nvidia-smi/rocm-smi in")
            else:
                self._exec_result = exec_gpus(container, self.host.vendor)
        except (DockerException, RequestException, OSError) as exc:  # container gone meanwhile
            self._exec_result = (None, f"exec in the llama-server container failed: {exc}")
        return self._exec_result


def _reading(gpus: list[dict[str, Any]], source: str, reason: str | None) -> dict[str, Any]:
    return {"gpus": gpus, "source": source, "reason": reason, "sampled_at": time.time()}
