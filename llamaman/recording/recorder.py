"""Request recording: turns are handed over here and written off the request thread.

`submit` (request thread) only updates the Prometheus metrics and puts the turn on a bounded
queue. The writer thread reads the recording mode, builds the record and appends it; a full
queue or a storage error drops the record with a (rate-limited) log line, never the request.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from llamaman.periodic import PeriodicJob
from llamaman.recording.metrics import RequestMetrics
from llamaman.recording.records import build_record
from llamaman.storage.base import RequestLogRepository

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
PRUNE_INTERVAL_S = 3600.0
DROP_LOG_INTERVAL_S = 10.0
STOP_TIMEOUT_S = 10.0
DAY_S = 86400.0


class _Stop:
    """Queue marker that ends the writer."""


class DropLog:
    """Counts dropped records and logs them at most once per interval."""

    def __init__(self, metrics: RequestMetrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.clock = clock
        self.total = 0
        self._pending = 0
        self._logged_at: float | None = None
        self._lock = threading.Lock()

    def note(self, reason: str, detail: object = "") -> None:
        """Count one dropped record; log it unless a drop was logged very recently."""
        self.metrics.dropped.labels(reason).inc()
        with self._lock:
            self.total += 1
            self._pending += 1
            now = self.clock()
            if self._logged_at is not None and now - self._logged_at < DROP_LOG_INTERVAL_S:
                return
            count, self._pending, self._logged_at = self._pending, 0, now
        log.warning("request record dropped (%s%s); %d dropped since the last message",
                    reason, f": {detail}" if detail else "", count)


class Recorder:
    """Accepts finished turns, feeds the metrics, and writes records on its own thread."""

    def __init__(self, repo: RequestLogRepository, mode: Callable[[], str],
                 retention_days: Callable[[], int] = lambda: 0,
                 mode_version: Callable[[], int] = lambda: 0,
                 metrics: RequestMetrics | None = None, queue_size: int = QUEUE_SIZE,
                 clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self._mode = mode
        self._retention_days = retention_days
        # Changes whenever this node saves the mode, so callers that cache it know to read again.
        self.mode_version = mode_version
        self.metrics = metrics or RequestMetrics()
        self.clock = clock
        self.drops = DropLog(self.metrics)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._pruner = PeriodicJob("request-log-prune", PRUNE_INTERVAL_S, self.prune_expired)

    def mode(self) -> str:
        """The current recording mode: off, per_request or per_conversation."""
        return self._mode()

    def enabled(self) -> bool:
        return self.mode() != "off"

    def submit(self, turn: dict[str, Any]) -> None:
        """Queue one finished turn for writing; never blocks or raises."""
        try:
            self.metrics.observe(turn)
        except Exception:  # metrics must never fail a request
            log.exception("could not update request metrics")
        try:
            self._queue.put_nowait(turn)
        except queue.Full:
            self.drops.note("queue full")

    def start(self) -> None:
        """Start the writer and the hourly retention pruning."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="request-recorder", daemon=True)
        self._thread.start()
        self._pruner.start()

    def stop(self) -> None:
        """Flush what is queued and stop."""
        self._pruner.stop()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._queue.put(_Stop(), timeout=STOP_TIMEOUT_S)
        except queue.Full:
            log.warning("request recorder did not drain its queue in time")
        thread.join(STOP_TIMEOUT_S)

    def flush(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Wait until every turn submitted so far is written or dropped; False on timeout."""
        if self._thread is None:
            return self._queue.empty()
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def prune_expired(self) -> int:
        """Delete records older than the retention setting (0 days keeps everything)."""
        days = self._retention_days()
        if not days:
            return 0
        removed = self.repo.prune(self.clock() - days * DAY_S)
        if removed:
            log.info("request log: pruned %d records older than %s days", removed, days)
        return removed

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _Stop):
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._write(item)

    def _write(self, turn: dict[str, Any]) -> None:
        """Store one turn under the current mode; any failure drops it with a log line."""
        try:
            mode = self.mode()
            if mode != "off":
                self.repo.append(build_record(turn, mode))
        except Exception as exc:  # noqa: BLE001 - full disk, database down, bad turn: drop, go on
            self.drops.note("storage error", exc)
