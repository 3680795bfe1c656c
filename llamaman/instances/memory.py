"""Memory per component as llama-server reports it while loading (its `… buffer size = N MiB`
log lines): model weights, KV cache, compute and output buffers, summed over devices."""
from __future__ import annotations

import re
from pathlib import Path

from llamaman.runtime.base import tail_lines

# The manager's line before each launch: only the newest load counts (logs are appended to).
LAUNCH_MARK = re.compile(r"^\[llamaman [^\]]*\] launching ")
_BUFFER = re.compile(r"\b(model|KV|RS|compute|output) buffer size\s*=\s*([\d.]+)\s*(B|KiB|MiB|GiB)\b")
COMPONENT = {"model": "weights", "KV": "kv_cache", "RS": "recurrent_state", "compute": "compute_buffers",
             "output": "output_buffers"}
_UNIT = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
SCAN_LINES = 5000


def memory_breakdown(log_path: Path | str) -> dict[str, int]:
    """Bytes per component of the newest load in the log ({} when it reports none)."""
    lines = tail_lines(log_path, SCAN_LINES, max_bytes=4 * 2**20)
    return parse_breakdown(lines)


def parse_breakdown(lines: list[str]) -> dict[str, int]:
    """Bytes per component from the lines after the last launch mark."""
    start = max((i for i, line in enumerate(lines) if LAUNCH_MARK.match(line)), default=-1)
    totals: dict[str, int] = {}
    for line in lines[start + 1:]:
        match = _BUFFER.search(line)
        if match:
            key = COMPONENT[match.group(1)]
            totals[key] = totals.get(key, 0) + round(float(match.group(2)) * _UNIT[match.group(3)])
    return totals
