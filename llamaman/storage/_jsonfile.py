"""A JSON document on disk: cached reads, atomic writes, locked read-modify-write.

Lock order (outermost first): FileLock's threading.Lock, then its fcntl.flock.
Nothing else is locked while a FileLock is held, and FileLocks never nest.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from llamaman.errors import StorageError

T = TypeVar("T")

# Timestamps have coarse granularity and inode numbers are reused, so a file
# rewritten within this window could repeat a cached (ino, mtime, size) key.
# Entries are trusted only once the file is older than this ("racy git" rule).
RACY_WINDOW_NS = 1_000_000_000
TMP_SUFFIX = ".tmp"


def clone(value: Any) -> Any:
    """Return a deep copy of a JSON-compatible value (faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Serialise a document the way every file of the JSON backend is written."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def fsync_dir(path: Path) -> None:
    """Persist directory entries (a rename) of path."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, text: str) -> None:
    """Replace path with text so a crash leaves either the old or the new content."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def remove_stale_temp_files(path: Path) -> int:
    """Delete temp files a crashed writer left beside path; call under its lock."""
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed += 1
    return removed


class FileLock:
    """Exclusive lock across threads (threading.Lock) and processes (flock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the duration of the with-block."""
        with self._thread_lock:
            # A fresh descriptor per hold: flock locks belong to the open file
            # description, so this also excludes other FileLocks on the same path.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock


class JsonDocument:
    """One JSON file holding a dict; reads are cached, writes atomic and serialised."""

    def __init__(self, path: Path, default: Callable[[], dict] = dict) -> None:
        self.path = path
        self._default = default
        self._lock = FileLock(path.with_name(path.name + ".lock"))
        self._cache: tuple[tuple[int, int, int], Any] | None = None

    def read(self) -> Any:
        """Return a private deep copy of the current document."""
        return clone(self.peek())

    def peek(self) -> Any:
        """Return the cached document itself; callers must not mutate it."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                if self._cache is not None and self._cache[0] == key:
                    return self._cache[1]
                data = self._parse(f.read())
        except FileNotFoundError:
            return self._default()
        if time.time_ns() - st.st_mtime_ns > RACY_WINDOW_NS:
            self._cache = (key, data)
        return data

    def transact(self, fn: Callable[[Any], T]) -> T:
        """Run fn on a fresh copy of the document under the lock; write it back if changed."""
        with self._lock.hold():
            raw = self._read_raw()
            data = self._parse(raw) if raw is not None else self._default()
            result = fn(data)
            text = dumps(data)
            before = raw if raw is not None else dumps(self._default()).encode("utf-8")
            if text.encode("utf-8") != before:
                self._write(text)
            return result

    def cleanup(self) -> int:
        """Remove temp files left by writers that crashed; return how many."""
        with self._lock.hold():
            return remove_stale_temp_files(self.path)

    def _read_raw(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read {self.path}: {e}") from e

    def _write(self, text: str) -> None:
        try:
            atomic_write(self.path, text)
        except OSError as e:
            raise StorageError(f"cannot write {self.path}: {e}") from e

    def _parse(self, raw: bytes) -> Any:
        try:
            data = json.loads(raw) if raw.strip() else self._default()
        except ValueError as e:
            raise StorageError(f"{self.path} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise StorageError(f"{self.path} must hold a JSON object")
        return data
