"""Waiting for a launched llama-server to become healthy, with a stall limit, not a fixed one."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import urllib3

from llamaman.runtime import LaunchFailed, Runtime, RuntimeRef
from llamaman.runtime.base import tail_lines

POLL_INTERVAL_S = 0.01  # readiness is seen within 10 ms: a wake waits on it (a refused probe costs ~0.1 ms)
STATE_INTERVAL_S = 0.25


class Cancelled(Exception):
    """The launch was abandoned (the instance is being stopped)."""


def probe_health(http: urllib3.PoolManager, host: str, port: int, timeout: float) -> int | None:
    """GET /health; the status code, or None when nothing answers."""
    try:
        response = http.request("GET", f"http://{host}:{port}/health", timeout=timeout,
                                retries=False, redirect=False)
        return response.status
    except urllib3.exceptions.HTTPError:
        return None


class HealthWaiter:
    """Polls /health every 10 ms until 200; fails when the server exits or stops progressing."""

    def __init__(self, runtime: Runtime, check_timeout: float, stall_limit: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.check_timeout = check_timeout
        self.stall_limit = stall_limit
        self.clock = clock
        self.http = urllib3.PoolManager(maxsize=8, block=False)

    def wait(self, ref: RuntimeRef, cancelled: threading.Event) -> None:
        """Return once healthy; raise LaunchFailed or Cancelled."""
        host, port = self.runtime.upstream(ref)
        progress = _Progress(ref.log_path, self.clock)
        checked = float("-inf")
        while True:
            if cancelled.is_set():
                raise Cancelled()
            status = probe_health(self.http, host, port, self.check_timeout)
            if status == 200:
                return
            if self.clock() - checked >= STATE_INTERVAL_S:  # asking the runtime costs more
                checked = self.clock()
                self._check_alive(ref, progress.stalled_for(status))
            cancelled.wait(POLL_INTERVAL_S)

    def _check_alive(self, ref: RuntimeRef, stalled_for: float) -> None:
        state = self.runtime.state(ref)
        if not state.running:
            raise LaunchFailed(state.reason or f"llama-server {state.status} before it was healthy")
        if stalled_for > self.stall_limit:
            last = "\n".join(tail_lines(ref.log_path, 10))
            raise LaunchFailed(f"no load progress for {self.stall_limit:g}s "
                               f"(MODEL_LOAD_TIMEOUT); last log lines:\n{last}")


class _Progress:
    """Tracks signs of life: the log growing or the health answer changing."""

    def __init__(self, log_path: str, clock: Callable[[], float]) -> None:
        self.log_path = log_path
        self.clock = clock
        self.last_change = clock()
        self.last_seen: tuple[int, int | None] = (self._log_size(), None)

    def stalled_for(self, status: int | None) -> float:
        seen = (self._log_size(), status)
        if seen != self.last_seen:
            self.last_seen = seen
            self.last_change = self.clock()
        return self.clock() - self.last_change

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return -1
