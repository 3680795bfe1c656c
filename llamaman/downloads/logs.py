"""Per-download log files under LOGS_DIR/downloads, with tokens masked before anything is written.

Reading, tailing and the SSE stream (byte-offset event ids) are the instance logs' own.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llamaman.instances.logs import InstanceLogs

MIN_SECRET_LEN = 4


class DownloadLogs(InstanceLogs):
    """Log files of download jobs (append-only, so byte offsets are stable event ids)."""

    def __init__(self, logs_dir: Path) -> None:
        self.dir = logs_dir / "downloads"

    def write(self, job_id: str, message: str, secrets: Iterable[str | None] = ()) -> None:
        """Append a line, with every secret replaced by '***'."""
        self.event(job_id, redact(message, secrets))


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """The text with each (non-trivial) secret replaced by '***'."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LEN:
            text = text.replace(secret, "***")
    return text
