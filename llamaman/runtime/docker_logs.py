"""Copies a container's output into the instance log file and reports when it ends.

One daemon thread per container follows `docker logs`. Docker closes the stream when the
container stops, so the end of the stream doubles as exit detection (no polling).

Lines are requested with Docker's timestamps; the timestamp of the last copied line is kept
in `<log>.cursor`, so a restarted manager resumes exactly after it (no line twice, none lost).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docker.errors import DockerException
from requests.exceptions import RequestException
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)
_STREAM_ERRORS = (DockerException, RequestException, HTTPError, OSError, ValueError)
RETRY_S = 1.0


class LogPump:
    """Follows one container's output into a file until the container stops or cancel()."""

    def __init__(
        self,
        api: Any,
        container_id: str,
        log_path: Path,
        since: tuple[int, int] | None,
        on_end: Callable[[], bool],
    ) -> None:
        """`on_end` is called when the stream ends; it returns True to follow again."""
        self._api = api
        self._container_id = container_id
        self._log_path = Path(log_path)
        self._since = since
        self._on_end = on_end
        self._cancelled = threading.Event()
        self._stream: Any = None
        self._thread = threading.Thread(
            target=self._run, name=f"logpump-{container_id[:12]}", daemon=True
        )

    def start(self) -> LogPump:
        """Start following in the background."""
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop following; the thread ends soon after (the stream socket is closed)."""
        self._cancelled.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(OSError):  # closing a socket that already broke is fine
                stream.close()

    def _copy(self, chunk: bytes, out) -> None:
        """Write the lines newer than the cursor (without their timestamps); move the cursor."""
        for line in chunk.splitlines(keepends=True):
            stamp, _, text = line.partition(b" ")
            key = stamp_key(stamp)
            if key is None:
                out.write(line)
                continue
            if self._since is not None and key <= self._since:
                continue  # Docker's since is inclusive and coarser than its stamps
            out.write(text)
            self._since = key
        out.flush()
        write_cursor(self._log_path, self._since)

    def join(self, timeout: float) -> None:
        """Wait up to timeout for the pump to write what is left."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._cancelled.is_set():
            self._follow()
            if self._cancelled.is_set() or not self._on_end():
                return
            time.sleep(RETRY_S)  # the stream broke but the container runs: follow again

    def _follow(self) -> None:
        """Append the container's output to the log file until the stream ends."""
        try:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._log_path, "ab") as out:
                self._stream = self._api.logs(
                    self._container_id, stream=True, follow=True, timestamps=True,
                    since=cursor_seconds(self._since),
                )
                if self._cancelled.is_set():
                    self._stream.close()
                for chunk in self._stream:
                    self._copy(chunk, out)
        except _STREAM_ERRORS as exc:  # engine gone, container removed, socket closed by cancel()
            if not self._cancelled.is_set():
                log.debug("log stream of %s ended: %s", self._container_id[:12], exc)
        finally:
            self._stream = None


def stamp_key(stamp: bytes) -> tuple[int, int] | None:
    """(epoch seconds, nanoseconds) of an RFC 3339 Docker timestamp, or None."""
    try:
        text = stamp.decode("ascii").rstrip("Z")
        whole, _, fraction = text.partition(".")
        seconds = int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
        return seconds, int((fraction or "0").ljust(9, "0")[:9])
    except (UnicodeDecodeError, ValueError):
        return None


def cursor_seconds(key: tuple[int, int] | None) -> float | None:
    """Docker's since parameter for a cursor (it is inclusive; _copy drops what was copied)."""
    return None if key is None else float(key[0]) + key[1] / 1e9 - 1e-3


def cursor_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".cursor")


def write_cursor(log_path: Path, key: tuple[int, int] | None) -> None:
    if key is not None:
        cursor_path(log_path).write_text(f"{key[0]} {key[1]}")


def read_cursor(log_path: Path) -> tuple[int, int] | None:
    """The cursor a previous manager left, or None."""
    try:
        seconds, nanos = cursor_path(log_path).read_text().split()
        return int(seconds), int(nanos)
    except (OSError, ValueError):
        return None
