"""The CPU quota, memory limit and usage of a process's cgroup (v2, and v1 incl. hybrid hosts).

psutil reads the host's /proc, which a container does not namespace: inside a container the
limits that matter are the cgroup's, so they are read here. Paths take the filesystem root.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llamaman.monitoring.gpu_sysfs import read_int
from llamaman.runtime.detect import ROOT

_V1_UNLIMITED = 1 << 60  # v1 reports "no limit" as a page-rounded 2^63-1


@dataclass(frozen=True)
class Cgroup:
    """Where one cgroup's controller files are (the same directory on v2)."""

    version: int
    cpu: Path
    cpuacct: Path
    memory: Path


def cgroup_of(pid: int | str = "self", root: Path = ROOT) -> Cgroup | None:
    """The cgroup of a process from /proc/<pid>/cgroup; None when it cannot be found."""
    try:
        lines = (root / f"proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    base = root / "sys/fs/cgroup"
    paths: dict[str, Path] = {}  # controller -> its cgroup directory ("" for the v2 hierarchy)
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            # a v1 hierarchy is mounted under its controller list, e.g. "cpu,cpuacct"
            mount = base / controllers if (base / controllers).is_dir() or not name else base / name
            paths[name] = _located(mount, path.lstrip("/"))
    if "memory" in paths:  # v1 (or hybrid): one hierarchy per controller
        return Cgroup(1, paths.get("cpu", base / "cpu"), paths.get("cpuacct", base / "cpuacct"),
                      paths["memory"])
    if "" in paths and (base / "cgroup.controllers").exists():
        own = paths[""]
        return Cgroup(2, own, own, own)
    return None


def _located(mount: Path, path: str) -> Path:
    """The cgroup's directory; inside a container its own cgroup is mounted at the root."""
    if path:
        candidate = mount / path
        if candidate.is_dir():
            return candidate
    return mount


def cpu_quota_cores(group: Cgroup) -> float | None:
    """CPUs the cgroup may use (quota / period), None when unlimited."""
    if group.version == 2:
        fields = _read(group.cpu / "cpu.max").split()
        if len(fields) != 2 or fields[0] == "max":
            return None
        quota, period = _int(fields[0]), _int(fields[1])
    else:
        quota, period = read_int(group.cpu / "cpu.cfs_quota_us"), read_int(group.cpu / "cpu.cfs_period_us")
    if not quota or not period or quota < 0:
        return None
    return quota / period


def memory_limit(group: Cgroup) -> int | None:
    """The cgroup's memory limit in bytes, None when unlimited."""
    name = "memory.max" if group.version == 2 else "memory.limit_in_bytes"
    limit = read_int(group.memory / name)  # "max" (v2) reads as None
    return limit if limit is not None and limit < _V1_UNLIMITED else None


def memory_working_set(group: Cgroup) -> int | None:
    """Bytes in use less inactive page cache (what `docker stats` shows as usage)."""
    usage = read_int(group.memory / ("memory.current" if group.version == 2 else "memory.usage_in_bytes"))
    if usage is None:
        return None
    stat = _stat(group.memory / "memory.stat")
    inactive = stat.get("inactive_file" if group.version == 2 else "total_inactive_file", 0)
    return max(usage - min(inactive, usage), 0)


def cpu_usage_ns(group: Cgroup) -> int | None:
    """CPU time consumed by the cgroup so far, in nanoseconds."""
    if group.version == 2:
        usec = _stat(group.cpuacct / "cpu.stat").get("usage_usec")
        return usec * 1000 if usec is not None else None
    return read_int(group.cpuacct / "cpuacct.usage")


def _stat(path: Path) -> dict[str, int]:
    values = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        number = _int(value)
        if number is not None:
            values[key] = number
    return values


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
