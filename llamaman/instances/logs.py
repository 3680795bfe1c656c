"""Instance log files: tail, manager event lines, and streams (SSE, WebSocket) that resume by byte offset.

Files are only ever appended to (relaunches included), so a byte offset is a stable event id:
a client reconnecting with Last-Event-ID continues exactly after the last line it saw.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from llamaman.runtime.base import tail_lines

POLL_S = 0.25
KEEPALIVE_S = 15.0
MAX_TAIL_LINES = 10_000


class InstanceLogs:
    def __init__(self, logs_dir: Path) -> None:
        self.dir = logs_dir / "instances"

    def path(self, instance_id: str) -> Path:
        return self.dir / f"{instance_id}.log"

    def event(self, instance_id: str, message: str) -> None:
        """Append a manager line (launch, crash, restart) to the instance's log."""
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        line = f"[llamaman {stamp}] {message}\n".encode("utf-8", "replace")
        fd = os.open(self.path(instance_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one O_APPEND write: never interleaves inside a line
        finally:
            os.close(fd)

    def tail(self, instance_id: str, lines: int) -> list[str]:
        return tail_lines(self.path(instance_id), min(lines, MAX_TAIL_LINES), max_bytes=4 * 2**20)

    def delete(self, instance_id: str) -> None:
        self.path(instance_id).unlink(missing_ok=True)

    def stream(self, instance_id: str, last_event_id: str | None, backlog: int,
               alive=lambda: True) -> Iterator[str]:
        """SSE events `id: <offset>` / `data: <line>`; resumes after last_event_id when given."""
        for entry in self.entries(instance_id, last_event_id, backlog, alive):
            yield ": keep-alive\n\n" if entry is None else f"id: {entry[0]}\ndata: {entry[1]}\n\n"

    def entries(self, instance_id: str, after: str | None, backlog: int,
                alive=lambda: True) -> Iterator[tuple[int, str] | None]:
        """(sequence, line) for each complete line, the sequence being the byte offset after
        it; resumes after `after` when given; None now and then while nothing is written."""
        path = self.path(instance_id)
        offset = _resume_offset(path, after, backlog)
        pending = b""
        quiet_since = time.monotonic()
        while alive():
            data = _read_from(path, offset)
            if data:
                offset += len(data)
                pending += data
                *complete, pending = pending.split(b"\n")
                yield from _numbered(complete, offset - len(pending))
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_S:
                yield None
                quiet_since = time.monotonic()
            else:
                time.sleep(POLL_S)


def _numbered(lines: list[bytes], end: int) -> Iterator[tuple[int, str]]:
    """Complete lines ending at byte `end`, each with the offset after it."""
    position = end - sum(len(line) + 1 for line in lines)
    for line in lines:
        position += len(line) + 1
        yield position, line.decode("utf-8", "replace").rstrip("\r")


def _resume_offset(path: Path, last_event_id: str | None, backlog: int) -> int:
    size = path.stat().st_size if path.exists() else 0
    if last_event_id is not None and last_event_id.isdigit():
        return min(int(last_event_id), size)
    return _offset_of_last_lines(path, size, backlog)


def _offset_of_last_lines(path: Path, size: int, lines: int) -> int:
    """Byte offset where the last `lines` complete lines start."""
    if lines <= 0 or size == 0:
        return size
    window = min(size, 4 * 2**20)
    with open(path, "rb") as handle:
        handle.seek(size - window)
        data = handle.read(window)
    cut = len(data)
    if data.endswith(b"\n"):
        cut -= 1
    for _ in range(lines):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return size - window
    return size - window + cut + 1


def _read_from(path: Path, offset: int, limit: int = 256 * 1024) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(limit)
    except FileNotFoundError:
        return b""
