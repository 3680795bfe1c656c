"""Running one job: resolve the repo, plan its files, fetch each one, retry, finish.

A file is written to `<dest>.part`, verified (size, and sha256 when the Hub gives one),
then renamed into place; a GGUF gets its sidecar (repo_id, filename, revision, sha256)
and the model library is told to rescan.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import requests

from llamaman.downloads import cache
from llamaman.downloads.failures import DownloadFailed, Stopped
from llamaman.downloads.hub import HubClient, RepoSnapshot
from llamaman.downloads.jobs import (
    CANCELLED,
    COMPLETED,
    DOWNLOADING,
    FAILED,
    PAUSED,
    QUEUED,
    Control,
    Progress,
)
from llamaman.downloads.plan import plan_files
from llamaman.downloads.store import JobStore
from llamaman.downloads.throttle import Throttle, TokenBucket, mbps_to_bytes
from llamaman.downloads.transfer import FileTask, fetch, part_path
from llamaman.models.scanner import HF_MARKER, SHARD_RE
from llamaman.models.source_file import write_sidecar

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0
PERSIST_EVERY_S = 2.0


class Runner:
    """Executes jobs from the job store (one call of run() per worker at a time)."""

    def __init__(self, jobs: JobStore, hub: HubClient, models_dir: Path, cache_dir: Path, *,
                 token_for: Callable[[str], str | None], global_limit: Callable[[], TokenBucket],
                 retry_policy: Callable[[], tuple[bool, int]], landed: Callable[[], None],
                 retry_base_s: float = 1.0) -> None:
        self.jobs = jobs
        self.hub = hub
        self.models_dir = models_dir
        self.cache_dir = cache_dir
        self.token_for = token_for  # the job's token, else the stored setting, else HF_TOKEN
        self.global_limit = global_limit  # the shared bucket, its rate refreshed from the settings
        self.retry_policy = retry_policy  # (auto retry on, retries per download)
        self.landed = landed  # a model file arrived: the library rescans
        self.retry_base_s = retry_base_s

    def run(self, job_id: str, control: Control) -> None:
        """Download every file of a queued job, retrying retryable failures when allowed."""
        record = self.jobs.get(job_id)
        if record is None or record.get("status") != QUEUED:
            return
        self.jobs.save(job_id, status=DOWNLOADING, error=None, started_at=record.get("started_at") or time.time())
        self.jobs.note(job_id, f"started {record['repo_id']}")
        attempt = 0
        while True:
            try:
                self._attempt(job_id, control)
                return self._finish(job_id, COMPLETED, "completed")
            except Stopped:
                return self._stopped(job_id, control)
            except OSError as exc:  # disk full, permissions: a clear reason, not a crash
                message = f"cannot write {exc.filename or 'the file'}: {exc.strerror or exc}"
                return self._finish(job_id, FAILED, f"failed: {message}", error=message)
            except DownloadFailed as exc:
                attempt += 1
                if not self._may_retry(job_id, exc, attempt):
                    return self._finish(job_id, FAILED, f"failed: {exc.message}", error=exc.message)
                if control.event.wait(self._backoff(job_id, exc, attempt)):
                    return self._stopped(job_id, control)

    # one attempt ------------------------------------------------------------------------
    def _attempt(self, job_id: str, control: Control) -> None:
        record = self.jobs.get(job_id) or {}
        token = self.token_for(job_id)
        snapshot = self.hub.snapshot(record["repo_id"], token, revision=record.get("revision"))
        files = record.get("files") or self._plan(job_id, record, snapshot)
        progress = Progress(sum(_on_disk(f) for f in files), sum(f["size"] or 0 for f in files))
        self.jobs.track(job_id, progress)
        session = requests.Session()
        try:
            for entry in files:
                if not entry["done"]:
                    self._fetch_file(job_id, record, snapshot, entry, token, progress, control, session)
                    self.jobs.save(job_id, files=files, downloaded_bytes=progress.done)
        finally:
            session.close()
            self.jobs.track(job_id, None)
        self._after_all(record, snapshot, files)

    def _plan(self, job_id: str, record: dict[str, Any], snapshot: RepoSnapshot) -> list[dict]:
        files = plan_files(record, snapshot, self.models_dir, self.cache_dir)
        total = sum(f["size"] or 0 for f in files)
        self.jobs.save(job_id, files=files, revision=snapshot.commit, total_bytes=total)
        self.jobs.note(job_id, f"revision {snapshot.commit}: {len(files)} file(s), {total} bytes: "
                              + ", ".join(f["name"] for f in files))
        return files

    def _fetch_file(self, job_id: str, record: dict[str, Any], snapshot: RepoSnapshot, entry: dict,
                    token: str | None, progress: Progress, control: Control, session: requests.Session) -> None:
        dest = Path(entry["dest"])
        if not self.jobs.claim(job_id, entry["dest"]):
            raise DownloadFailed(f"another download is writing {dest}")
        progress.current_file = entry["name"]
        self.jobs.save(job_id, current_file=entry["name"])
        if _already_present(dest, entry):
            self.jobs.note(job_id, f"{entry['name']}: already present at {dest}, not downloaded again")
            progress.add(entry["size"] or 0)
            return self._landed(record, snapshot, entry, dest, entry["sha256"])
        task = FileTask(self.hub.file_url(record["repo_id"], snapshot.commit, entry["name"]),
                        part_path(dest), entry["name"], entry["size"], self.hub.headers(token))
        offset = _size_of(task.part)
        self.jobs.note(job_id, f"{entry['name']}: downloading to {dest}"
                              + (f" (resuming at byte {offset})" if offset else ""))
        digest = fetch(task, session, self._throttle(record, control), self._counter(job_id, progress),
                       control.event.is_set)
        self._verify(entry, task.part, digest)
        os.replace(task.part, dest)
        self.jobs.note(job_id, f"{entry['name']}: done, sha256 {digest}")
        self._landed(record, snapshot, entry, dest, digest)

    def _verify(self, entry: dict, part: Path, digest: str) -> None:
        expected = (entry.get("sha256") or "").lower()
        if expected and digest != expected:
            part.unlink(missing_ok=True)
            raise DownloadFailed(f"sha256 mismatch for {entry['name']}: the Hub says {expected}, "
                                 f"the downloaded file is {digest}; the file was removed")

    def _landed(self, record: dict[str, Any], snapshot: RepoSnapshot, entry: dict, dest: Path,
                digest: str | None) -> None:
        entry["done"] = True
        if _first_gguf(entry["name"]):
            write_sidecar(dest, record["repo_id"], filename=entry["name"], revision=snapshot.commit,
                          sha256=digest, downloaded_at=time.time())
        self.landed()

    def _after_all(self, record: dict[str, Any], snapshot: RepoSnapshot, files: list[dict]) -> None:
        if record.get("kind") == "file" and not record.get("filename") and HF_MARKER in snapshot.files:
            write_sidecar(Path(record["destination"]), record["repo_id"], revision=snapshot.commit, downloaded_at=time.time())
            self.landed()
        if record.get("layout") == "cache":
            cache.write_manifest(self.cache_dir, record["repo_id"], record["tag"], snapshot.commit, files)

    # throttling and progress ----------------------------------------------------------------
    def _throttle(self, record: dict[str, Any], control: Control) -> Throttle:
        own = TokenBucket(mbps_to_bytes(record.get("speed_limit_mbps") or 0))
        return Throttle([own, self.global_limit()], wait=control.event.wait)

    def _counter(self, job_id: str, progress: Progress):
        saved_at = [time.monotonic()]

        def count(amount: int) -> None:
            progress.add(amount)
            now = time.monotonic()
            if now - saved_at[0] >= PERSIST_EVERY_S:
                saved_at[0] = now
                self.global_limit()
                self.jobs.save(job_id, downloaded_bytes=progress.done)
        return count

    # endings ----------------------------------------------------------------------------------
    def _may_retry(self, job_id: str, exc: DownloadFailed, attempt: int) -> bool:
        enabled, count = self.retry_policy()
        return exc.retryable and enabled and attempt <= count

    def _backoff(self, job_id: str, exc: DownloadFailed, attempt: int) -> float:
        delay = min(MAX_BACKOFF_S, self.retry_base_s * 2 ** (attempt - 1))
        _, count = self.retry_policy()
        self.jobs.save(job_id, retries=attempt, error=f"retry {attempt}/{count} in {delay:g} s: {exc.message}")
        self.jobs.note(job_id, f"{exc.message}; retry {attempt}/{count} in {delay:g} s "
                              "(resuming from the bytes on disk)")
        return delay

    def _stopped(self, job_id: str, control: Control) -> None:
        if control.intent == "pause":
            return self._finish(job_id, PAUSED, "paused; the part files stay for a resume", finished=False)
        if control.intent == "cancel":
            record = self.jobs.get(job_id) or {}
            removed = remove_partials(record, self.jobs.claimed_by_others(job_id))
            return self._finish(job_id, CANCELLED, f"cancelled; removed {len(removed)} partial file(s)")
        self._finish(job_id, QUEUED, "interrupted by shutdown; will resume on the next start", finished=False)

    def _finish(self, job_id: str, status: str, message: str, *, finished: bool = True, **fields: Any) -> None:
        if status == COMPLETED:
            fields.update(error=None, current_file=None)
            record = self.jobs.get(job_id) or {}
            fields["downloaded_bytes"] = record.get("total_bytes") or record.get("downloaded_bytes")
        self.jobs.save(job_id, status=status, finished_at=time.time() if finished else None, **fields)
        self.jobs.note(job_id, message)


def remove_partials(record: dict[str, Any], keep: Iterable[str] = ()) -> list[str]:
    """Delete the `.part` files of a job's files (never a completed file, never another job's)."""
    removed = []
    for entry in record.get("files") or []:
        if entry.get("done") or entry["dest"] in keep:
            continue
        part = part_path(Path(entry["dest"]))
        if part.is_file():
            part.unlink()
            removed.append(str(part))
    return removed


def _first_gguf(name: str) -> bool:
    base = PurePosixPath(name).name
    match = SHARD_RE.match(base)
    return base.lower().endswith(".gguf") and (match is None or int(match["index"]) == 1)


def _already_present(dest: Path, entry: dict) -> bool:
    """A complete copy is already at the destination (same size, same sha256 when known)."""
    if not dest.is_file() or (entry["size"] is not None and dest.stat().st_size != entry["size"]):
        return False
    if not entry.get("sha256"):
        return entry["size"] is not None
    digest = hashlib.sha256()
    with open(dest, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == entry["sha256"].lower()


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _on_disk(entry: dict) -> int:
    if entry.get("done"):
        return entry.get("size") or 0
    return _size_of(part_path(Path(entry["dest"])))
