"""The FIFO request gate: order, limits, queue bound, timeouts, disconnects, live resize, pools."""
import threading
import time

import pytest

from llamaman.errors import QueueFull
from llamaman.proxy.gate import ClientGone, Gate, Gates, GateTimeout


def start_waiters(gate, count, log, timeout=10.0):
    """Start `count` acquirers one after another (so arrival order is known)."""
    threads = []
    for index in range(count):
        def run(i=index):
            admission = gate.acquire(timeout)
            log.append((i, admission.seq))
        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
        wait_for(lambda n=index + 1: gate.counts("a")[1] + gate.counts("a")[0] >= n or len(log) >= n)
    return threads


def wait_for(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_admission_is_fifo_and_bounded():
    gate = Gate()
    gate.set_member("a", limit=2, queue_depth=3)
    assert gate.acquire(1).member_id == "a" and gate.acquire(1).seq == 2
    log = []
    threads = start_waiters(gate, 3, log)
    assert gate.counts("a") == (2, 3)
    with pytest.raises(QueueFull):
        gate.acquire(1)
    for expected in range(3):
        gate.release("a")
        wait_for(lambda n=expected + 1: len(log) == n)
        assert gate.counts("a")[0] == 2
    assert [i for i, _ in log] == [0, 1, 2] and [seq for _, seq in log] == [3, 4, 5]
    for thread in threads:
        thread.join()


def test_unlimited_member_never_queues():
    gate = Gate()
    gate.set_member("a", limit=0, queue_depth=0)
    for _ in range(50):
        gate.acquire(0.1)
    assert gate.counts("a") == (50, 0)


def test_timeout_and_disconnect_leave_the_queue():
    gate = Gate()
    gate.set_member("a", limit=1, queue_depth=5)
    gate.acquire(1)
    with pytest.raises(GateTimeout):
        gate.acquire(0.2)
    gone = threading.Event()
    errors = []

    def waiter():
        try:
            gate.acquire(10, gone.is_set)
        except ClientGone as err:
            errors.append(err)
    thread = threading.Thread(target=waiter)
    thread.start()
    wait_for(lambda: gate.counts("a")[1] == 1)
    gone.set()
    thread.join(2)
    assert errors and gate.counts("a") == (1, 0)


def test_lowering_the_limit_keeps_running_requests_and_admits_nothing_until_below():
    gate = Gate()
    gate.set_member("a", limit=4, queue_depth=10)
    for _ in range(4):
        gate.acquire(1)
    gate.set_member("a", limit=1, queue_depth=10)
    log = []
    start_waiters(gate, 2, log)
    for _ in range(3):
        gate.release("a")
    time.sleep(0.2)
    assert log == [] and gate.counts("a") == (1, 2)
    gate.set_member("a", limit=3, queue_depth=10)
    wait_for(lambda: len(log) == 2)
    assert gate.counts("a") == (3, 0)


def test_shared_pool_sends_requests_to_the_least_busy_member():
    gates = Gates()
    gates.configure("a", "model.gguf", limit=2, queue_depth=5)
    gates.configure("b", "model.gguf", limit=2, queue_depth=5)
    members = [gates.admit("a", 1, lambda: False).member_id for _ in range(4)]
    assert sorted(members) == ["a", "a", "b", "b"]
    with pytest.raises(GateTimeout):
        gates.admit("b", 0.2, lambda: False)


def test_moving_out_of_a_pool():
    gates = Gates()
    gates.configure("a", "m", 1, 5)
    gates.configure("b", "m", 1, 5)
    gates.configure("b", None, 1, 5)
    assert gates.gate("a") is not gates.gate("b")
    assert gates.admit("a", 1, lambda: False).member_id == "a"
