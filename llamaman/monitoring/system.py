"""CPU and RAM readings: the host's through psutil, the cgroup's limits when in a container."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil

from llamaman.monitoring import cgroup as cg

MB = 1024 * 1024


class SystemSampler:
    """Takes one CPU/RAM reading per sample(); CPU % is the use since the previous sample."""

    def __init__(self, group: cg.Cgroup | None, clock: Callable[[], float] = time.monotonic) -> None:
        """`group` is the manager's cgroup when it runs in a container (None: host readings)."""
        self.group = group
        self._clock = clock
        self._last_cpu: tuple[float, int] | None = None
        psutil.cpu_percent(interval=None)  # primes psutil's counter: its first call says 0.0

    def sample(self) -> dict[str, Any]:
        """One reading, in the JSON shape of GET /api/system-info."""
        quota = cg.cpu_quota_cores(self.group) if self.group else None
        count = psutil.cpu_count(logical=True) or 1
        reading = {
            "cpu_percent": self._cpu_percent(quota),
            "cpu_cores": round(min(quota, count), 2) if quota else count,
            "cpu_count": count,
            "cpu_quota_cores": round(quota, 2) if quota else None,
            **self._memory(),
            "in_container": self.group is not None,
            "cgroup_version": self.group.version if self.group else None,
            "sampled_at": time.time(),
        }
        return reading

    def _cpu_percent(self, quota: float | None) -> float:
        """Use of the quota when there is one (the cgroup's CPU time), else of the host's CPUs."""
        used = cg.cpu_usage_ns(self.group) if self.group and quota else None
        if used is None:
            return round(psutil.cpu_percent(interval=None), 1)
        now = self._clock()
        last, self._last_cpu = self._last_cpu, (now, used)
        if last is None or now <= last[0]:
            return 0.0
        share = (used - last[1]) / 1e9 / ((now - last[0]) * quota)
        return round(min(max(share * 100, 0.0), 100.0), 1)

    def _memory(self) -> dict[str, Any]:
        vm = psutil.virtual_memory()
        limit = cg.memory_limit(self.group) if self.group else None
        working = cg.memory_working_set(self.group) if self.group and limit else None
        if limit and working is not None:
            total, used, source = min(limit, vm.total), working, "cgroup"
        else:
            total, used, source = vm.total, max(vm.total - vm.available, 0), "host"
        return {
            "ram_total_mb": round(total / MB), "ram_used_mb": round(used / MB),
            "ram_free_mb": round(max(total - used, 0) / MB),
            "ram_percent": round(100 * used / total, 1) if total else 0.0,
            "ram_total_bytes": total, "ram_used_bytes": used,
            "memory_limit_bytes": limit, "ram_source": source,
        }
