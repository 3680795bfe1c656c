"""NVIDIA GPUs read through NVML (the `pynvml` module of nvidia-ml-py).

A missing module, a missing driver library or a failing nvmlInit is not an error: the
reader answers no readings and a reason, and tries to initialise again a minute later.
"""
from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

RETRY_INIT_S = 60.0
NVML_HINT = ("in Docker, uncomment the deploy.resources.reservations block of docker-compose.yml "
             "(NVIDIA Container Toolkit 'utility' capability)")


def import_pynvml() -> ModuleType:
    """Import pynvml (raises ImportError when nvidia-ml-py is not installed)."""
    return importlib.import_module("pynvml")


class NvmlReader:
    """Reads every NVIDIA GPU; NVML is initialised on first use and shut down by close()."""

    def __init__(self, load: Callable[[], ModuleType] = import_pynvml,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._clock = clock
        self._lock = threading.Lock()  # leaf lock: NVML init/shutdown against reads
        self._nvml: ModuleType | None = None
        self._reason: str | None = None
        self._next_try = 0.0

    def read(self) -> tuple[list[dict[str, Any]] | None, str | None]:
        """Return (readings, None), or (None, why NVML cannot be used)."""
        with self._lock:
            nvml = self._ensure_init()
            if nvml is None:
                return None, self._reason
            try:
                return [_read_device(nvml, i) for i in range(nvml.nvmlDeviceGetCount())], None
            except nvml.NVMLError as exc:  # e.g. a GPU fell off the bus: re-initialise later
                self._drop(f"NVML read failed: {exc}")
                return None, self._reason

    def close(self) -> None:
        """Shut NVML down (when it was initialised)."""
        with self._lock:
            self._drop(None)

    def _ensure_init(self) -> ModuleType | None:
        if self._nvml is not None or self._clock() < self._next_try:
            return self._nvml
        try:
            nvml = self._load()
        except ImportError:
            self._fail("NVML unavailable: the nvidia-ml-py package (pynvml) is not installed")
            return None
        try:
            nvml.nvmlInit()
        except (nvml.NVMLError, OSError) as exc:
            self._fail(f"NVML unavailable: {exc or type(exc).__name__}; {NVML_HINT}")
            return None
        self._nvml, self._reason = nvml, None
        return nvml

    def _fail(self, reason: str) -> None:
        self._reason = reason
        self._next_try = self._clock() + RETRY_INIT_S

    def _drop(self, reason: str | None) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                pass  # shutting down a lost device: nothing left to release
        if reason is not None:
            self._fail(reason)


def _read_device(nvml: ModuleType, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    name = nvml.nvmlDeviceGetName(handle)
    return {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "vendor": "cuda",
        "memory_total_bytes": int(memory.total),
        "memory_used_bytes": int(memory.used),
        "utilization_pct": _optional(nvml, lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        "temperature_c": _optional(nvml, lambda: nvml.nvmlDeviceGetTemperature(
            handle, nvml.NVML_TEMPERATURE_GPU)),
    }


def _optional(nvml: ModuleType, read: Callable[[], Any]) -> Any:
    """A reading some boards do not support (NVMLError_NotSupported): None then."""
    try:
        return read()
    except nvml.NVMLError:
        return None
