"""Request log of the JSON backend: one JSON-lines file per conversation id."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from llamaman.storage import upstream
from llamaman.storage._common import check_log_record, log_matches, newest
from llamaman.storage._jsonfile import TMP_SUFFIX, FileLock, atomic_write, fsync_dir
from llamaman.storage.base import Record

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
MAX_STEM = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_filename(conversation_id: str) -> str:
    """Map a conversation id to a unique file name that cannot leave its directory."""
    stem = _UNSAFE.sub("_", conversation_id)[:MAX_STEM]
    if stem != conversation_id or not stem:
        # Sanitising is lossy; the digest keeps distinct ids in distinct files.
        digest = hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()[:16]
        stem = f"{stem}-{digest}"
    return stem + SUFFIX


def read_records(path: Path) -> list[Record]:
    """Return the records of a JSON-lines file, skipping torn or malformed lines."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("skipping unreadable line in %s", path)
            continue
        # LlamaMan 1.2.1 lines have an ISO created_at and no ts/id: read with ours added.
        record = upstream.log_record(record, f"{path.stem}-{number}") if isinstance(record, dict) else None
        if record is not None:
            records.append(record)
    return records


class JsonRequestLog:
    """Request records appended to <dir>/<conversation>.jsonl under a directory lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # One lock for the directory: prune rewrites files that appends write to.
        self._lock = FileLock(directory / ".lock")

    def open(self) -> None:
        """Create the directory and drop temp files of prunes that crashed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock.hold():
            for tmp in self.directory.glob(f".*{SUFFIX}.*{TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)

    def append(self, record: Record) -> None:
        """Store one request record (must carry 'id', 'ts', 'conversation_id')."""
        line = json.dumps(check_log_record(record), ensure_ascii=False) + "\n"
        path = self.directory / safe_filename(record["conversation_id"])
        with self._lock.hold():
            created = not path.exists()
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            if created:
                fsync_dir(self.directory)

    def query(
        self,
        *,
        since: float | None = None,
        inst_id: str | None = None,
        conversation_id: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Return matching records, oldest first (the newest `limit` when limited)."""
        if conversation_id is not None:
            name = safe_filename(conversation_id)
            paths = [self.directory / name, *sorted(self.directory.glob(f"*/{name}"))]
        else:
            paths = self._files()
        found = [
            r
            for path in paths
            for r in read_records(path)
            if log_matches(r, since, inst_id, conversation_id)
        ]
        found.sort(key=lambda r: r["ts"])
        return newest(found, limit)

    def prune(self, older_than: float) -> int:
        """Delete records with ts < older_than; return how many were removed."""
        removed = 0
        with self._lock.hold():
            for path in self._files():
                removed += _prune_file(path, older_than)
        return removed

    def _files(self) -> list[Path]:
        # LlamaMan 1.2.1 kept one directory per day: request_log/<date>/<conversation>.jsonl
        return sorted(self.directory.glob("*" + SUFFIX)) + sorted(self.directory.glob("*/*" + SUFFIX))


def _prune_file(path: Path, older_than: float) -> int:
    """Rewrite one log file without its old records; call under the directory lock."""
    records = read_records(path)
    keep = [r for r in records if r["ts"] >= older_than]
    if len(keep) == len(records):
        return 0
    if keep:
        atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))
    else:
        path.unlink()
        fsync_dir(path.parent)
    return len(records) - len(keep)
