"""Speed limits with a fake clock: per-download buckets, one global bucket shared by all."""
from __future__ import annotations

import heapq

import pytest

from llamaman.downloads.jobs import Progress
from llamaman.downloads.throttle import Throttle, TokenBucket, mbps_to_bytes

CHUNK = 64 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.now += seconds
        return False


def simulate(clock: FakeClock, downloads: list[list[TokenBucket]], seconds: float,
             changes: dict[float, tuple[TokenBucket, float]] | None = None) -> list[int]:
    """Run downloads that each read CHUNK after chunk through their buckets, in order, as the
    service's Throttle does (reserve, wait, next bucket); returns the bytes each one got."""
    sent = [0] * len(downloads)
    events = [(0.0, index, 0) for index in range(len(downloads))]
    pending = sorted((changes or {}).items())
    while events:
        at, index, stage = heapq.heappop(events)
        if at >= seconds:
            continue
        while pending and pending[0][0] <= at:
            bucket, rate = pending.pop(0)[1]
            bucket.set_rate(rate)
        clock.now = at
        if stage == len(downloads[index]):
            sent[index] += CHUNK
            heapq.heappush(events, (at, index, 0))
        else:
            delay = downloads[index][stage].reserve(CHUNK)
            heapq.heappush(events, (at + delay, index, stage + 1))
    return sent


def mbit_per_s(amount: int, seconds: float) -> float:
    return amount * 8 / 1e6 / seconds


def test_one_download_keeps_to_its_own_limit():
    clock = FakeClock()
    own, shared = TokenBucket(mbps_to_bytes(20), clock), TokenBucket(0, clock)
    throttle = Throttle([own, shared], wait=clock.sleep)
    sent = 0
    while clock.now < 20:
        assert throttle.acquire(CHUNK)
        sent += CHUNK
    assert mbit_per_s(sent, clock.now) == pytest.approx(20, rel=0.005)


def test_three_downloads_share_the_global_limit():
    clock = FakeClock()
    shared = TokenBucket(mbps_to_bytes(30), clock)
    sent = simulate(clock, [[TokenBucket(0, clock), shared] for _ in range(3)], 20)
    assert mbit_per_s(sum(sent), 20) == pytest.approx(30, rel=0.01)
    for each in sent:
        assert mbit_per_s(each, 20) == pytest.approx(10, rel=0.02)


def test_a_per_download_limit_below_its_share_leaves_the_rest_to_the_others():
    clock = FakeClock()
    shared = TokenBucket(mbps_to_bytes(30), clock)
    limited = [TokenBucket(mbps_to_bytes(5), clock), shared]
    sent = simulate(clock, [limited] + [[TokenBucket(0, clock), shared] for _ in range(2)], 20)
    assert mbit_per_s(sent[0], 20) == pytest.approx(5, rel=0.02)
    assert mbit_per_s(sum(sent), 20) == pytest.approx(30, rel=0.01)


def test_the_global_limit_changes_live():
    def run(seconds: float, change: bool) -> int:
        clock = FakeClock()
        shared = TokenBucket(mbps_to_bytes(30), clock)
        downloads = [[TokenBucket(0, clock), shared] for _ in range(3)]
        changes = {10.0: (shared, mbps_to_bytes(10))} if change else None
        return sum(simulate(clock, downloads, seconds, changes))

    first, total = run(10, change=False), run(20, change=True)
    assert mbit_per_s(first, 10) == pytest.approx(30, rel=0.01)
    assert mbit_per_s(total - first, 10) == pytest.approx(10, rel=0.02)


def test_unlimited_buckets_never_wait():
    clock = FakeClock()
    bucket = TokenBucket(0, clock)
    assert [bucket.reserve(10**9) for _ in range(3)] == [0.0, 0.0, 0.0]
    bucket.set_rate(mbps_to_bytes(8))
    assert bucket.reserve(10**6) == pytest.approx(1.0)


def test_a_stop_while_waiting_ends_the_acquire():
    clock = FakeClock()
    throttle = Throttle([TokenBucket(mbps_to_bytes(1), clock)], wait=lambda seconds: True)
    assert throttle.acquire(CHUNK) is False


def test_credit_is_capped_so_an_idle_download_cannot_burst():
    clock = FakeClock()
    bucket = TokenBucket(mbps_to_bytes(8), clock, burst_s=0.25)
    clock.now = 100.0  # idle for a long time
    assert bucket.reserve(250_000) == 0.0  # a quarter second of credit...
    assert bucket.reserve(1_000_000) == pytest.approx(1.0)  # ...and not a byte more


def test_progress_speed_and_eta():
    clock = FakeClock()
    progress = Progress(done=0, total=10_000_000, clock=clock)
    for _ in range(4):
        clock.now += 1.0
        progress.add(1_000_000)
    assert progress.speed() == pytest.approx(1_000_000)
    assert progress.eta() == pytest.approx(6.0)
