"""The download job store: job records and their persistence, each job's log, and what a running
job holds (its live progress and the destinations it claimed).

The runner and the service share this and nothing else of each other. Lock order: the store's
lock is a leaf (taken inside DownloadService._lock, never around storage or file I/O).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from llamaman.downloads.jobs import Progress
from llamaman.downloads.logs import DownloadLogs
from llamaman.storage.base import Collection


class JobStore:
    """Download job records (node-scoped storage), their logs, live progress and claims."""

    def __init__(self, repo: Collection, logs: DownloadLogs,
                 secrets: Callable[[str], Iterable[str | None]] = lambda job_id: ()) -> None:
        self.repo = repo
        self.logs = logs
        self._secrets = secrets  # what note() masks for a job
        self._lock = threading.Lock()
        self._live: dict[str, Progress] = {}
        self._claims: dict[str, str] = {}  # destination path -> job id writing it

    # records ------------------------------------------------------------------------------
    def get(self, job_id: str) -> dict[str, Any] | None:
        """The stored record of a job, or None."""
        return self.repo.get(job_id)

    def list(self) -> list[dict[str, Any]]:
        """Every stored job record of this node."""
        return self.repo.list()

    def put(self, record: dict[str, Any]) -> None:
        """Store a new record under its id."""
        self.repo.put(record["id"], record)

    def save(self, job_id: str, **fields: Any) -> dict[str, Any] | None:
        """Update fields of a stored record (stamping updated_at); None when it is gone."""
        return self.repo.update(job_id, lambda cur: {**cur, **fields, "updated_at": time.time()} if cur else None)

    def delete(self, job_id: str) -> None:
        """Remove a job's record and its log."""
        self.repo.delete(job_id)
        self.logs.delete(job_id)

    def note(self, job_id: str, message: str) -> None:
        """Append a line to the job's log with every known secret masked."""
        self.logs.write(job_id, message, self._secrets(job_id))

    # while a job runs --------------------------------------------------------------------------
    def track(self, job_id: str, progress: Progress | None) -> None:
        """Publish (or, with None, withdraw) the live progress of a running job."""
        with self._lock:
            if progress is None:
                self._live.pop(job_id, None)
            else:
                self._live[job_id] = progress

    def live(self, job_id: str) -> Progress | None:
        """The live progress of a running job, or None."""
        return self._live.get(job_id)

    def claim(self, job_id: str, dest: str) -> bool:
        """Reserve a destination for one job at a time; False when another job writes it."""
        with self._lock:
            return self._claims.setdefault(dest, job_id) == job_id

    def claimed_by_others(self, job_id: str) -> set[str]:
        """Destinations other jobs are writing (their partial files are not this job's to remove)."""
        with self._lock:
            return {dest for dest, owner in self._claims.items() if owner != job_id}

    def release(self, job_id: str) -> None:
        """Drop a finished run's live progress and claims."""
        with self._lock:
            self._live.pop(job_id, None)
            for dest in [d for d, owner in self._claims.items() if owner == job_id]:
                del self._claims[dest]
