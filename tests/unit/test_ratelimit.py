from llamaman.auth.ratelimit import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_blocks_after_the_limit_and_recovers_after_the_window():
    clock = Clock()
    limiter = FailureLimiter(3, 60, clock)
    for _ in range(3):
        assert limiter.retry_after("ip") == 0
        limiter.record_failure("ip")
    assert limiter.retry_after("ip") == 60
    assert limiter.retry_after("other") == 0
    clock.now += 30
    assert limiter.retry_after("ip") == 30
    clock.now += 30.1
    assert limiter.retry_after("ip") == 0


def test_reset_clears_a_key_and_idle_keys_are_dropped():
    clock = Clock()
    limiter = FailureLimiter(1, 10, clock)
    limiter.record_failure("a")
    limiter.reset("a")
    assert limiter.retry_after("a") == 0
    limiter.record_failure("b")
    clock.now += 11
    limiter.retry_after("b")
    assert limiter._failures == {}
