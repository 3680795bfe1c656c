"""Token buckets for download speed limits: one per download and one shared by all of them.

A bucket holds byte credits refilled at `rate` bytes/s (capped at a short burst). A reader
reserves the bytes it just received and waits the delay the bucket returns; credits may go
negative, so concurrent readers of one bucket queue behind each other and their total rate
is the bucket's rate (3 downloads under a 30 Mbit/s bucket share 30, not 90).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

BYTES_PER_MBIT = 125_000  # 1 megabit = 10^6 bits
BURST_S = 0.25


def mbps_to_bytes(mbps: float) -> float:
    """Megabits per second to bytes per second (0 stays 0 = unlimited)."""
    return max(0.0, float(mbps)) * BYTES_PER_MBIT


class TokenBucket:
    """A rate in bytes/s that readers reserve from; rate 0 means unlimited."""

    def __init__(self, rate: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 burst_s: float = BURST_S) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._burst_s = burst_s
        self._rate = max(0.0, rate)
        self._tokens = 0.0
        self._stamp = clock()

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the rate live; credits earned so far are kept (debt is kept too)."""
        with self._lock:
            self._refill(self._clock())
            self._rate = max(0.0, rate)
            if self._rate == 0:
                self._tokens = 0.0

    def reserve(self, amount: int) -> float:
        """Take `amount` bytes of credit; return how long the caller must wait (seconds)."""
        with self._lock:
            if self._rate <= 0:
                return 0.0
            self._refill(self._clock())
            self._tokens -= amount
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def _refill(self, now: float) -> None:
        if self._rate > 0:
            earned = (now - self._stamp) * self._rate
            self._tokens = min(self._rate * self._burst_s, self._tokens + earned)
        self._stamp = now


class Throttle:
    """The buckets one download reads through (its own, then the global one)."""

    def __init__(self, buckets: Sequence[TokenBucket], wait: Callable[[float], bool]) -> None:
        self.buckets = list(buckets)
        self._wait = wait  # returns True when the download was asked to stop while waiting

    def acquire(self, amount: int) -> bool:
        """Wait until every bucket allows `amount` more bytes; False when stopped meanwhile."""
        for bucket in self.buckets:
            delay = bucket.reserve(amount)
            if delay > 0 and self._wait(delay):
                return False
        return True
