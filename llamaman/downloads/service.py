"""The download manager: jobs, the queue and its workers, pause/resume/cancel/remove.

Jobs live in storage.downloads (node-scoped). On start, jobs that were downloading when the
process stopped are queued again and resume from the bytes on disk; paused jobs stay paused.
Job tokens are kept in memory only (never stored, logged or returned): a job resumed after a
restart uses the stored token setting or HF_TOKEN instead.

Lock order: DownloadService._lock, then the job store's leaf lock; storage and file I/O happen
outside them, except the short record updates that decide a status change (so two callers
cannot both win).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llamaman.config import Config
from llamaman.downloads import names
from llamaman.downloads.hub import HubClient
from llamaman.downloads.jobs import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    DOWNLOADING,
    FAILED,
    PAUSED,
    QUEUED,
    Control,
    new_job,
    public_view,
)
from llamaman.downloads.logs import DownloadLogs
from llamaman.downloads.runner import Runner, remove_partials
from llamaman.downloads.store import JobStore
from llamaman.downloads.throttle import TokenBucket, mbps_to_bytes
from llamaman.errors import Conflict, Invalid, NotFound
from llamaman.settings.hf_tokens import HfTokens
from llamaman.settings.service import SettingsService
from llamaman.storage.base import Collection

log = logging.getLogger(__name__)

WORKERS = 4
STOP_WAIT_S = 15.0
LIMITS_TTL_S = 1.0
MAX_TOKEN_LEN = 512


class DownloadService:
    """Queues HuggingFace downloads and runs up to WORKERS of them at once."""

    def __init__(self, config: Config, repo: Collection, settings: SettingsService, library: Any,
                 hub: HubClient | None = None, *, workers: int = WORKERS, retry_base_s: float = 1.0) -> None:
        self.config = config
        self.settings = settings
        self.jobs = JobStore(repo, DownloadLogs(config.logs_dir), self._secrets)
        self.logs = self.jobs.logs
        self.models_dir = Path(config.models_dir)
        self.cache_dir = Path(config.llamactl_cache_dir or self.models_dir / "llamactl-cache")
        self.global_bucket = TokenBucket()
        self.workers = workers
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[str] = deque()
        self._running: dict[str, Control] = {}
        self._tokens: dict[str, str] = {}
        self._threads: list[threading.Thread] = []
        self._idle = 0  # workers waiting for a job
        self._closing = False
        self._limits_at = float("-inf")
        self.runner = Runner(self.jobs, hub or HubClient(config.hf_endpoint), self.models_dir, self.cache_dir,
                             token_for=self.token_for, global_limit=self._global_limit,
                             retry_policy=self.retry_policy, landed=library.invalidate,
                             retry_base_s=retry_base_s)

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Re-queue interrupted jobs; workers start with the first job that finds none idle."""
        self._closing = False
        self._queue.clear()
        for record in sorted(self.jobs.list(), key=lambda r: r.get("created_at") or 0):
            if record.get("status") == DOWNLOADING:
                self.jobs.save(record["id"], status=QUEUED)
                self.note(record["id"], "resumed after a restart: continuing from the bytes on disk")
            if record.get("status") in (QUEUED, DOWNLOADING):
                with self._wake:
                    self._queue_locked(record["id"])

    def _queue_locked(self, job_id: str) -> None:
        """Queue a job (the lock held), starting one more worker when none is free for it."""
        self._queue.append(job_id)
        self._wake.notify()
        if len(self._threads) < self.workers and len(self._queue) > self._idle:
            thread = threading.Thread(target=self._work, name=f"download-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Stop the workers; running jobs go back to queued and resume on the next start."""
        with self._wake:
            self._closing = True
            for control in self._running.values():
                control.stop("shutdown")
            self._wake.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(STOP_WAIT_S)

    @property
    def workers_started(self) -> int:
        """Worker threads running now (they start with the first jobs, up to `workers`)."""
        with self._lock:
            return sum(thread.is_alive() for thread in self._threads)

    @property
    def closing(self) -> bool:
        return self._closing

    # public API ------------------------------------------------------------------------
    def enqueue(self, repo_id: str, filename: str | None, *, hf_token: str | None = None,
                hf_token_id: str | None = None, speed_limit_mbps: float = 0.0,
                dest_path: Path | None = None) -> dict:
        """Queue one file (a shard expands to all shards) or, without filename, the whole repo."""
        repo_id = names.check_repo_id(repo_id)
        filename = names.check_filename(filename)
        dest = self._checked_dest(dest_path, filename)
        token_id, saved = self._saved_token(hf_token_id, hf_token)
        return self._create(new_job(kind="file", layout="repo", repo_id=repo_id, filename=filename, tag=None,
                                    dest_path=str(dest) if dest else None,
                                    destination=str(dest or names.repo_dir(self.models_dir, repo_id)),
                                    speed_limit_mbps=names.check_speed_limit(speed_limit_mbps),
                                    source="api", hf_token_id=token_id), saved or hf_token)

    def _saved_token(self, token_id: Any, given: Any) -> tuple[str | None, str | None]:
        """(id, secret) of the saved token a download names by hf_token_id; (None, None) for none."""
        if token_id in (None, ""):
            return None, None
        if not isinstance(token_id, str) or len(token_id) > 128:
            raise Invalid("'hf_token_id' must be the id of a saved HuggingFace token", field="hf_token_id")
        if given:
            raise Invalid("send 'hf_token' or 'hf_token_id', not both", field="hf_token_id")
        secret = HfTokens(self.settings.repo).secret(token_id)
        if secret is None:
            raise Invalid(f"no saved HuggingFace token with id {token_id}", field="hf_token_id")
        return token_id, secret

    def enqueue_tag(self, repo_id: str, tag: str, *, layout: str = "cache", hf_token: str | None = None,
                    source: str = "llamactl") -> dict:
        """Queue the GGUF of a quantization tag with its mmproj and preset.ini (llamactl, Ollama pull)."""
        repo_id = names.check_repo_id(repo_id)
        where = self.cache_dir if layout == "cache" else names.repo_dir(self.models_dir, repo_id)
        return self._create(new_job(kind="tag", layout=layout, repo_id=repo_id, filename=None, tag=tag,
                                    dest_path=None, destination=str(where), speed_limit_mbps=0.0,
                                    source=source), hf_token)

    def get(self, job_id: str) -> dict:
        """The public view of one job; NotFound for unknown ids."""
        return self._view(self._record(job_id))

    def list(self) -> list[dict]:
        """Every job of this node, newest first."""
        records = sorted(self.jobs.list(), key=lambda r: r.get("created_at") or 0, reverse=True)
        return [self._view(r) for r in records]

    def _view(self, record: dict[str, Any]) -> dict:
        # log_file: LlamaMan 1.2.1's field; the same log is served by /api/downloads/<id>/logs
        return {**public_view(record, self.jobs.live(record["id"])), "log_file": str(self.logs.path(record["id"]))}

    def pause(self, job_id: str) -> dict:
        """Pause a queued or running job; its part files stay for a Range resume."""
        control = self._stop_running(job_id, "pause")
        if control is None:
            self._transition(job_id, {QUEUED}, PAUSED, "paused")
        return self.get(job_id)

    def resume(self, job_id: str) -> dict:
        """Queue a paused or failed job again; it continues from the bytes on disk."""
        self._transition(job_id, {PAUSED, FAILED}, QUEUED, "resumed", error=None)
        return self.get(job_id)

    def cancel(self, job_id: str) -> dict:
        """Stop a job and remove its partial files (completed files and anything else stay)."""
        control = self._stop_running(job_id, "cancel")
        if control is None or self._record(job_id).get("status") != CANCELLED:
            record = self._transition(job_id, {QUEUED, PAUSED, FAILED}, CANCELLED, "cancelled",
                                      finished_at=time.time())
            remove_partials(record, self.jobs.claimed_by_others(job_id))
        return self.get(job_id)

    def remove(self, job_id: str) -> dict:
        """Delete a finished job's record and log (partial files of a failed job too). The check
        and the delete hold the queue's lock, as a resume does: a resume finds the job or nothing."""
        self._let_go(job_id, (COMPLETED, FAILED, CANCELLED))
        with self._wake:
            record = self._record(job_id)
            if record.get("status") in ACTIVE or job_id in self._running:
                raise Conflict(f"download {job_id} is {record['status']}; cancel it before removing it")
            keep = self.jobs.claimed_by_others(job_id)
            self.jobs.delete(job_id)
            self._tokens.pop(job_id, None)
        remove_partials(record, keep)
        return {"id": job_id, "removed": True, "status": "removed"}

    # what the runner is given ---------------------------------------------------------------
    def token_for(self, job_id: str) -> str | None:
        """The job's own token (or the saved one it names), else the stored setting, else HF_TOKEN."""
        own = self._tokens.get(job_id) or self._named_token(job_id)
        return own or self.settings.hf_token() or self.config.hf_token

    def _named_token(self, job_id: str) -> str | None:
        """The saved token named by the job's hf_token_id (after a restart the memory is empty)."""
        token_id = (self.jobs.get(job_id) or {}).get("hf_token_id")
        secret = HfTokens(self.settings.repo).secret(token_id) if token_id else None
        if secret:
            with self._lock:
                self._tokens[job_id] = secret  # note() masks it from now on
        return secret

    def note(self, job_id: str, message: str) -> None:
        """Append a line to the job's log with every known token masked."""
        self.jobs.note(job_id, message)

    def _secrets(self, job_id: str) -> tuple[str | None, ...]:
        return self._tokens.get(job_id), self.settings.hf_token(), self.config.hf_token

    def _global_limit(self) -> TokenBucket:
        """The shared bucket, with the global speed limit setting applied (read at most once a second)."""
        now = time.monotonic()
        if now - self._limits_at >= LIMITS_TTL_S:
            self._limits_at = now
            limit = self.settings.get().get("download_speed_limit_mbps") or 0
            self.global_bucket.set_rate(mbps_to_bytes(limit))
        return self.global_bucket

    def retry_policy(self) -> tuple[bool, int]:
        """(auto retry on, retries per failed download) from the settings."""
        settings = self.settings.get()
        return bool(settings.get("auto_retry_failed_downloads")), int(settings.get("retry_count_per_failed_download") or 3)

    # internals -------------------------------------------------------------------------
    def _checked_dest(self, dest_path: Path | str | None, filename: str | None) -> Path | None:
        if dest_path is None:
            return None
        if filename is None:
            raise Invalid("dest_path needs a filename (a whole repository lands in its own folder)",
                          field="dest_path")
        return names.inside(self.models_dir, Path(dest_path))

    def _create(self, record: dict[str, Any], token: str | None) -> dict:
        token = _checked_token(token)
        record["has_token"] = bool(token)
        self._refuse_duplicate(record)
        self.jobs.put(record)
        with self._wake:
            if token:
                self._tokens[record["id"]] = token
            self._queue_locked(record["id"])
        what = record.get("filename") or (f"tag {record['tag']}" if record.get("tag") else "whole repository")
        self.note(record["id"], f"queued {record['repo_id']} ({what}) -> {record['destination']}")
        return self.get(record["id"])

    def _refuse_duplicate(self, record: dict[str, Any]) -> None:
        same = ("kind", "layout", "repo_id", "filename", "tag", "dest_path")
        for other in self.jobs.list():
            if other.get("status") in ACTIVE and all(other.get(k) == record.get(k) for k in same):
                raise Conflict(f"{record['repo_id']} is already being downloaded (job {other['id']})",
                               job_id=other["id"])

    def _record(self, job_id: str) -> dict[str, Any]:
        record = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if record is None:
            raise NotFound(f"download {str(job_id)[:64]!r} not found")
        return record

    def _transition(self, job_id: str, allowed: set[str], status: str, verb: str, **fields: Any) -> dict:
        """Move a job that is not running from one of `allowed` to `status`, or Conflict."""
        self._let_go(job_id, allowed)
        with self._wake:
            record = self._record(job_id)
            if job_id in self._running or record.get("status") not in allowed:
                raise Conflict(f"download {job_id} is {record.get('status')}; it cannot be {verb}")
            if status == QUEUED:
                self._queue_locked(job_id)
            elif job_id in self._queue:
                self._queue.remove(job_id)
            updated = self.jobs.save(job_id, status=status, **fields) or record
        self.note(job_id, verb)
        return updated

    def _let_go(self, job_id: str, statuses: Iterable[str]) -> None:
        """Wait for a job already in one of `statuses` whose worker is still letting go of it."""
        control = self._running.get(job_id)
        if control is not None and self._record(job_id).get("status") in statuses:
            control.finished.wait(STOP_WAIT_S)  # its worker saved the ending and is letting go

    def _stop_running(self, job_id: str, intent: str) -> Control | None:
        """Ask a running job to stop and wait until its worker let go; None when not running."""
        self._record(job_id)
        with self._lock:
            control = self._running.get(job_id)
            if control is not None:
                control.stop(intent)
        if control is not None and not control.finished.wait(STOP_WAIT_S):
            raise Conflict(f"download {job_id} did not stop within {STOP_WAIT_S:.0f} s; try again")
        return control

    def _work(self) -> None:
        while True:
            with self._wake:
                self._idle += 1
                while not self._closing and not self._queue:
                    self._wake.wait()
                self._idle -= 1
                if self._closing:
                    return
                job_id = self._queue.popleft()
                if job_id in self._running:
                    continue  # queued twice (resumed while still letting go): one worker is enough
                control = self._running[job_id] = Control()
            try:
                self.runner.run(job_id, control)
            except Exception as exc:  # a bug must fail the job, not kill the worker
                log.exception("download %s crashed", job_id)
                self.jobs.save(job_id, status=FAILED, error=f"internal error: {type(exc).__name__}",
                               finished_at=time.time())
            finally:
                with self._lock:
                    self._running.pop(job_id, None)
                    self.jobs.release(job_id)
                control.finished.set()


def _checked_token(token: Any) -> str | None:
    if token is None or token == "":
        return None
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LEN or not token.isascii() \
            or any(ch.isspace() for ch in token):
        raise Invalid("'hf_token' must be a HuggingFace access token (no spaces)", field="hf_token")
    return token
