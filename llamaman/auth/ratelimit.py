"""Sliding-window failure counter used to slow down password guessing."""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    """Counts failures per key inside a time window; blocks a key past the limit."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """Seconds until key may try again (0 when it may try now)."""
        with self._lock:
            stamps = self._prune(key)
            if len(stamps) < self.limit:
                return 0.0
            return max(0.0, stamps[0] + self.window_s - self.clock())

    def record_failure(self, key: str) -> None:
        with self._lock:
            self._prune(key)
            self._failures.setdefault(key, deque()).append(self.clock())

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _prune(self, key: str) -> deque[float]:
        stamps = self._failures.get(key)
        if stamps is None:
            return deque()
        horizon = self.clock() - self.window_s
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._failures[key]  # idle keys are dropped so the map stays small
        return stamps
