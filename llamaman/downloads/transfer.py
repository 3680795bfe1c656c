"""One file's bytes: streamed into `<dest>.part`, resumed with HTTP Range from the bytes on disk.

Returns the sha256 of the whole file (the bytes already on disk are hashed first), so the
caller can verify it against the Hub's LFS metadata before renaming the part file.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from llamaman.downloads.failures import DownloadFailed, Stopped, http_failure
from llamaman.downloads.throttle import Throttle

CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0


@dataclass
class FileTask:
    """Where one file comes from and goes to."""

    url: str
    part: Path
    label: str  # the path in the repo, for messages
    size: int | None
    headers: dict[str, str]


def part_path(dest: Path) -> Path:
    """The temporary file a download writes before it is complete."""
    return dest.with_name(dest.name + ".part")


def fetch(task: FileTask, session: requests.Session, throttle: Throttle,
          on_bytes: Callable[[int], None], stopping: Callable[[], bool]) -> str:
    """Download the rest of task.part; return the sha256 of the complete file."""
    offset = _usable_offset(task)
    digest = _hash_prefix(task.part, offset)
    if task.size is not None and offset == task.size:
        return digest.hexdigest()
    headers = {**task.headers, "Range": f"bytes={offset}-"} if offset else dict(task.headers)
    try:
        with session.get(task.url, headers=headers, stream=True,
                         timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as response:
            offset, digest = _accept(response, task, offset, digest)
            offset = _stream(response, task, offset, digest, throttle, on_bytes, stopping)
    except requests.RequestException as exc:
        raise DownloadFailed(f"connection to the Hub lost while downloading {task.label}: "
                             f"{type(exc).__name__}", retryable=True) from None
    if task.size is not None and offset != task.size:
        raise DownloadFailed(f"{task.label}: the Hub sent {offset} of {task.size} bytes", retryable=True)
    return digest.hexdigest()


def _usable_offset(task: FileTask) -> int:
    """Bytes already on disk that a resume can keep (a part larger than the file is discarded)."""
    try:
        offset = task.part.stat().st_size
    except FileNotFoundError:
        return 0
    if task.size is not None and offset > task.size:
        task.part.unlink()
        return 0
    return offset


def _hash_prefix(path: Path, length: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    if length:
        with open(path, "rb") as handle:
            while chunk := handle.read(min(CHUNK * 16, length - handle.tell())):
                digest.update(chunk)
    return digest


def _accept(response: requests.Response, task: FileTask, offset: int,
            digest: hashlib._Hash) -> tuple[int, hashlib._Hash]:
    """Check the status; a server that ignored our Range restarts the file from byte 0."""
    if response.status_code >= 400:
        raise http_failure(response.status_code, task.label)
    if offset and response.status_code == 200:
        return 0, hashlib.sha256()
    if offset:
        start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
        if start != str(offset):
            raise DownloadFailed(f"{task.label}: the Hub answered range {start!r}, asked for {offset}",
                                 retryable=True)
    return offset, digest


def _stream(response: requests.Response, task: FileTask, offset: int, digest: hashlib._Hash,
            throttle: Throttle, on_bytes: Callable[[int], None], stopping: Callable[[], bool]) -> int:
    task.part.parent.mkdir(parents=True, exist_ok=True)
    with open(task.part, "r+b" if offset else "wb") as handle:
        handle.truncate(offset)
        handle.seek(offset)
        for chunk in response.iter_content(CHUNK):
            if stopping() or not throttle.acquire(len(chunk)):
                raise Stopped()
            handle.write(chunk)
            digest.update(chunk)
            offset += len(chunk)
            on_bytes(len(chunk))
        handle.flush()
        os.fsync(handle.fileno())
    return offset
