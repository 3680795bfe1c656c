"""Reading what the engine reports: start times and resource stats of containers."""

from __future__ import annotations

import time
from datetime import datetime

from llamaman.runtime.base import ResourceStats


def started_at(attrs: dict) -> float:
    """Parse Docker's RFC 3339 StartedAt (nanoseconds) into epoch seconds; 0 when unknown."""
    raw = ((attrs or {}).get("State") or {}).get("StartedAt") or ""
    if not raw or raw.startswith("0001-"):
        return 0.0
    head, _, rest = raw.rstrip("Z").partition(".")
    fraction = float("0." + "".join(ch for ch in rest if ch.isdigit())[:6]) if rest else 0.0
    try:
        return datetime.fromisoformat(head + "+00:00").timestamp() + fraction
    except ValueError:
        return time.time()


def cpu_usage(sample: dict) -> tuple[int, int]:
    """Return (container CPU ns, host CPU ns): cumulative counters of one stats sample."""
    cpu = sample.get("cpu_stats") or {}
    return (cpu.get("cpu_usage") or {}).get("total_usage", 0), cpu.get("system_cpu_usage", 0)


def stats_from_sample(
    sample: dict, previous: tuple[int, int] | None, host_config: dict
) -> ResourceStats:
    """Turn a one-shot stats sample into ResourceStats; CPU % needs the previous sample.

    CPU % follows `docker stats`: per core, so 200 means two cores busy. Memory excludes
    the page cache (inactive_file), as `docker stats` does.
    """
    cpu = sample.get("cpu_stats") or {}
    cores = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    usage, system = cpu_usage(sample)
    percent = None
    if previous and system > previous[1]:
        share = (usage - previous[0]) / (system - previous[1])
        percent = round(share * (cores or 1) * 100.0, 1)
    memory = sample.get("memory_stats") or {}
    details = memory.get("stats") or {}
    inactive = details.get("inactive_file", details.get("total_inactive_file", 0))
    used = max(0, memory["usage"] - inactive) if "usage" in memory else None
    nano = host_config.get("NanoCpus") or 0
    return ResourceStats(
        cpu_percent=percent,
        cpu_quota=nano / 1e9 if nano else None,
        mem_used=used,
        mem_limit=host_config.get("Memory") or None,
    )
