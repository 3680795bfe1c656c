"""Background image pulls: one job per image, with per-layer progress from the engine's stream.

Lock order: `PullJobs._lock` is a leaf; it guards the job table and every job's fields.
No engine call, storage write or callback runs under it.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llamaman.runtime.image_names import ImageRef

log = logging.getLogger(__name__)

PULLING, DONE, ERROR = "pulling", "done", "error"
KEEP_FINISHED = 50  # finished jobs kept for the API; older ones are forgotten


@dataclass
class PullJob:
    """One pull of one image: its status, the engine's last message and each layer's progress."""

    image: str
    key: str
    reason: str = "manual"  # "manual" or "auto_update"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = PULLING
    message: str = "starting"
    error: str | None = None
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    old_digest: str | None = None
    new_digest: str | None = None
    digest_changed: bool = False

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one decoded progress line of the engine's pull stream into the job."""
        status = str(event.get("status") or "")
        layer = event.get("id")
        if status:
            self.message = f"{status} {layer}" if layer else status
        if status.startswith("Digest: "):
            self.new_digest = status.removeprefix("Digest: ").strip()
        if not layer or not _is_layer_event(status):
            return
        entry = self.layers.setdefault(str(layer), {"status": status, "current": 0, "total": None})
        entry["status"] = status
        detail = event.get("progressDetail") or {}
        if detail.get("total"):
            entry["current"], entry["total"] = int(detail.get("current") or 0), int(detail["total"])
        elif status in ("Download complete", "Pull complete", "Already exists") and entry["total"]:
            entry["current"] = entry["total"]

    def to_json(self) -> dict[str, Any]:
        """The job as the API shows it (also in LlamaMan's pull-status shape)."""
        done = sum(layer["current"] for layer in self.layers.values() if layer["total"])
        total = sum(layer["total"] for layer in self.layers.values() if layer["total"])
        return {
            "id": self.id, "image": self.image, "reason": self.reason, "status": self.status,
            "message": self.error or self.message, "error": self.error,
            "layers": [{"id": k, **v} for k, v in self.layers.items()],
            "progress": {"current": done, "total": total,
                         "percent": round(done * 100 / total, 1) if total else None},
            "started_at": self.started_at, "finished_at": self.finished_at,
            "old_digest": self.old_digest, "new_digest": self.new_digest,
            "digest_changed": self.digest_changed,
        }


def _is_layer_event(status: str) -> bool:
    """Layer lines carry a layer id; "Pulling from repo" carries the tag in `id` instead."""
    return not status.startswith(("Pulling from", "Digest:", "Status:"))


class PullJobs:
    """The table of pull jobs; `start` returns the running job of an image instead of a second one."""

    def __init__(self, run: Callable[[PullJob], None]) -> None:
        """`run(job)` performs the pull on the job's own thread and fills in the outcome."""
        self._run = run
        self._lock = threading.Lock()
        self._jobs: dict[str, PullJob] = {}
        self._running: dict[str, PullJob] = {}  # canonical image key -> its running job
        self._threads: list[threading.Thread] = []

    def start(self, ref: ImageRef, reason: str = "manual") -> tuple[PullJob, bool]:
        """Start pulling ref, or return its running job; the flag says whether it is new."""
        with self._lock:
            running = self._running.get(ref.key)
            if running is not None:
                return running, False
            job = PullJob(image=ref.name, key=ref.key, reason=reason)
            self._jobs[job.id] = job
            self._running[ref.key] = job
            self._forget_old()
        thread = threading.Thread(target=self._work, args=(job,), name=f"image-pull-{job.id}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return job, True

    def update(self, job: PullJob, events: Iterable[dict[str, Any]]) -> None:
        """Apply stream events to a job under the lock (readers see whole updates)."""
        for event in events:
            with self._lock:
                job.apply(event)

    def set(self, job: PullJob, **fields: Any) -> None:
        """Set fields of a job under the lock."""
        with self._lock:
            for name, value in fields.items():
                setattr(job, name, value)

    def finish(self, job: PullJob, error: str | None = None, **outcome: Any) -> None:
        """Mark a job done (or failed with error) and record its outcome fields."""
        with self._lock:
            for name, value in outcome.items():
                setattr(job, name, value)
            job.error = error
            job.status = ERROR if error else DONE
            job.finished_at = time.time()
            if self._running.get(job.key) is job:
                del self._running[job.key]

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.to_json() if job else None

    def running_for(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._running.get(key)
            return job.to_json() if job else None

    def list(self) -> list[dict[str, Any]]:
        """Every remembered job, newest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.started_at, reverse=True)
            return [job.to_json() for job in jobs]

    def join(self, timeout: float = 10.0) -> None:
        """Wait for running pulls to end (used on stop; pulls are not interruptible)."""
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self, job: PullJob) -> None:
        try:
            self._run(job)
        except Exception as exc:  # the job must end whatever happens; the reason is shown
            log.exception("image pull %s failed unexpectedly", job.id)
            self.finish(job, error=f"pull failed: {exc}")
        else:
            if job.status == PULLING:
                self.finish(job)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.status != PULLING]
        finished.sort(key=lambda j: j.started_at)
        for job in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]
