"""The cleanup jobs that the `cleanup` settings schedule (README "Cleanup").

One background thread ticks every TICK_S seconds. Each tick re-reads the settings, so a toggle
or an age applies at the next tick, and runs every enabled job whose interval has passed since
its `<job>_last_run_at` stamp. The stamps are kept per node (each node cleans only its own
records), taken from the injected clock, and written after every run, failed or not.

- downloads: completed/failed/cancelled download records older than downloads_max_age_hours
  go through the download manager's own removal (record and log; never a downloaded file).
- instances: stopped/failed instance records older than instances_max_age_hours go through
  the instance service's own removal (record and log file).
- stale_records: every stale_records_interval_min minutes, records vs. the runtime
  (llamaman/instances/reconcile.py): a lost llama-server is marked stopped on the second run
  that finds it gone, strays of this node are stopped at once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from llamaman.downloads.jobs import CANCELLED, COMPLETED
from llamaman.downloads.jobs import FAILED as DOWNLOAD_FAILED
from llamaman.errors import LlamamanError
from llamaman.instances import records as rec
from llamaman.instances.reconcile import StaleRecords
from llamaman.periodic import PeriodicJob

log = logging.getLogger(__name__)

TICK_S = 30.0
AGE_SWEEP_S = 300.0  # how often the two age-based jobs look for old records
JOBS = ("downloads", "instances", "stale_records")
FINISHED_DOWNLOADS = frozenset({COMPLETED, DOWNLOAD_FAILED, CANCELLED})
ENDED_INSTANCES = frozenset({rec.STOPPED, rec.FAILED})


class CleanupService:
    """Runs the cleanup jobs of this node on their schedule."""

    def __init__(self, settings: Any, downloads: Any, instances: Any,
                 clock: Callable[[], float] = time.time, *, tick_s: float = TICK_S) -> None:
        self.settings = settings
        self.downloads = downloads
        self.instances = instances
        self.clock = clock  # epoch seconds: compared with the records' own timestamps
        self.stale = StaleRecords(instances)
        self._lock = threading.Lock()  # one tick at a time (the thread, or a caller's tick())
        self.job = PeriodicJob("cleanup", tick_s, self.tick)

    def start(self) -> None:
        self.job.start()

    def stop(self) -> None:
        self.job.stop()

    def tick(self) -> dict[str, int]:
        """Run every enabled job that is due; returns how many records each job that ran changed."""
        with self._lock:
            cleanup = self.settings.get()["cleanup"]
            now = self.clock()
            return {name: self._run(name, cleanup, now) for name in JOBS if _due(name, cleanup, now)}

    def _run(self, name: str, cleanup: dict[str, Any], now: float) -> int:
        try:
            return getattr(self, f"clean_{name}")(cleanup, now)
        except Exception:  # one failing job must not stop the others; it runs again next interval
            log.exception("cleanup job %s failed", name)
            return 0
        finally:
            self.settings.stamp_cleanup(name, now)

    def clean_downloads(self, cleanup: dict[str, Any], now: float) -> int:
        """Remove finished download records older than downloads_max_age_hours."""
        cutoff = now - cleanup["downloads_max_age_hours"] * 3600
        old = [job["id"] for job in self.downloads.list()
               if job["status"] in FINISHED_DOWNLOADS and _older(job, cutoff, "finished_at", "updated_at")]
        return _remove_each(self.downloads.remove, old, "download")

    def clean_instances(self, cleanup: dict[str, Any], now: float) -> int:
        """Remove stopped/failed instance records older than instances_max_age_hours."""
        cutoff = now - cleanup["instances_max_age_hours"] * 3600
        old = [record["id"] for record in self.instances.list()
               if record["status"] in ENDED_INSTANCES and _older(record, cutoff, "stopped_at")]
        return _remove_each(self.instances.remove, old, "instance")

    def clean_stale_records(self, cleanup: dict[str, Any], now: float) -> int:
        """Reconcile this node's records with what the runtime runs."""
        report = self.stale.run()
        if report.suspects:
            log.info("stale-record check: llama-server gone for %s; marked stopped if still so next run",
                     ", ".join(report.suspects))
        return report.changed


def _due(name: str, cleanup: dict[str, Any], now: float) -> bool:
    if not cleanup.get(f"{name}_enabled"):
        return False
    last = cleanup.get(f"{name}_last_run_at")
    interval = cleanup["stale_records_interval_min"] * 60 if name == "stale_records" else AGE_SWEEP_S
    # A stamp in the future means the clock was set back: run rather than wait that long.
    return not isinstance(last, (int, float)) or now - last >= interval or now < last


def _older(record: dict[str, Any], cutoff: float, *ended: str) -> bool:
    """Whether the record ended before cutoff: the first of `ended` that is set, else created_at."""
    when = next((record[key] for key in (*ended, "created_at") if record.get(key) is not None), None)
    return when is not None and when < cutoff  # a record that cannot be dated is kept


def _remove_each(remove: Callable[[str], Any], ids: Iterable[str], what: str) -> int:
    removed = 0
    for record_id in ids:
        try:
            remove(record_id)
            removed += 1
        except LlamamanError as err:  # resumed, restarted or removed meanwhile: its rules win
            log.info("cleanup kept %s %s: %s", what, record_id, err.message)
    if removed:
        log.info("cleanup removed %d old %s record(s)", removed, what)
    return removed
