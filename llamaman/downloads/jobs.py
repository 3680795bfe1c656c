"""Download job records: statuses, the stored record, live progress and the public view."""
from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from typing import Any

QUEUED, DOWNLOADING, PAUSED = "queued", "downloading", "paused"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
ACTIVE = frozenset({QUEUED, DOWNLOADING, PAUSED})
SPEED_WINDOW_S = 3.0
_PUBLIC_KEYS = ("id", "kind", "repo_id", "filename", "tag", "status", "error", "current_file",
                "total_bytes", "downloaded_bytes", "speed_limit_mbps", "revision", "dest_path",
                "destination", "retries", "has_token", "source", "created_at", "started_at",
                "finished_at", "updated_at")


def new_job(**fields: Any) -> dict[str, Any]:
    """A fresh queued job record."""
    now = time.time()
    return {"id": secrets.token_hex(8), "status": QUEUED, "error": None, "current_file": None,
            "files": [], "total_bytes": None, "downloaded_bytes": 0, "revision": None, "retries": 0,
            "created_at": now, "updated_at": now, "started_at": None, "finished_at": None, **fields}


class Control:
    """How the service asks a running job to stop, and learns that it has."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.finished = threading.Event()
        self.intent: str | None = None  # "pause", "cancel" or "shutdown"

    def stop(self, intent: str) -> None:
        if self.intent != "cancel":  # a cancel overrides a pause requested just before
            self.intent = intent
        self.event.set()


class Progress:
    """Live byte count, speed and ETA of a running job (not persisted on every chunk)."""

    def __init__(self, done: int, total: int | None, clock=time.monotonic) -> None:
        self.clock = clock
        self.done = done
        self.total = total
        self.current_file: str | None = None
        self._samples: deque[tuple[float, int]] = deque([(clock(), done)])

    def add(self, amount: int) -> None:
        self.done += amount
        now = self.clock()
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW_S:
            self._samples.popleft()

    def speed(self) -> float:
        """Bytes per second over the last few seconds."""
        (start, first), (end, last) = self._samples[0], self._samples[-1]
        return (last - first) / (end - start) if end > start else 0.0

    def eta(self) -> float | None:
        speed = self.speed()
        if self.total is None or speed <= 0:
            return None
        return max(0.0, (self.total - self.done) / speed)


def public_view(record: dict[str, Any], live: Progress | None) -> dict[str, Any]:
    """What the API shows of a job: never its token, only whether it has one."""
    view = {key: record.get(key) for key in _PUBLIC_KEYS}
    view["files"] = [{k: f.get(k) for k in ("name", "dest", "size", "sha256", "done")}
                     for f in record.get("files") or []]
    speed = live.speed() if live and record.get("status") == DOWNLOADING else 0.0
    if live and record.get("status") == DOWNLOADING:
        view["downloaded_bytes"] = live.done
        view["current_file"] = live.current_file or view["current_file"]
    total, done = view["total_bytes"], view["downloaded_bytes"] or 0
    view["speed_bps"] = round(speed, 1)
    view["speed_mbps"] = round(speed * 8 / 1e6, 3)
    view["eta_seconds"] = round(live.eta(), 1) if live and speed > 0 and live.eta() is not None else None
    view.update(upstream_fields(record))
    view["progress"] = round(100.0 * done / total, 2) if total else (100.0 if record.get("status") == COMPLETED else 0.0)
    return view


def upstream_fields(record: dict[str, Any]) -> dict[str, Any]:
    """LlamaMan 1.2.1's names for a job's token, speed limit and retry count."""
    return {
        "hf_token_id": record.get("hf_token_id"),
        "per_model_speed_limit_mbps": record.get("per_model_speed_limit_mbps", record.get("speed_limit_mbps")),
        "retry_attempts": record.get("retry_attempts", record.get("retries")),
    }
