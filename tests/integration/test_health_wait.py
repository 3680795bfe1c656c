"""The launch stall limit: a server whose log keeps growing is never failed for slowness."""
import threading
import time

import pytest

from llamaman.instances.health import Cancelled, HealthWaiter
from llamaman.runtime import LaunchFailed, RuntimeRef, RuntimeState
from tests.helpers import free_port


class SlowRuntime:
    """A runtime fake whose server never answers /health but keeps running."""

    def __init__(self, port: int, state: RuntimeState | None = None) -> None:
        self.port = port
        self.current = state or RuntimeState("running")

    def upstream(self, ref):
        return "127.0.0.1", self.port

    def state(self, ref):
        return self.current


def ref_for(log_path) -> RuntimeRef:
    return RuntimeRef("process", "abc", "n", "1", "x", 1, 0.0, str(log_path))


def grow(path, seconds: float, done: threading.Event) -> None:
    end = time.monotonic() + seconds
    with open(path, "a") as log:
        while time.monotonic() < end:
            log.write("loading tensors...\n")
            log.flush()
            time.sleep(0.1)
    done.set()


def test_growing_log_keeps_a_slow_load_alive(tmp_path):
    log = tmp_path / "i.log"
    log.write_text("")
    waiter = HealthWaiter(SlowRuntime(free_port()), check_timeout=0.2, stall_limit=0.6)
    grown = threading.Event()
    threading.Thread(target=grow, args=(log, 1.8, grown), daemon=True).start()
    with pytest.raises(LaunchFailed) as err:
        waiter.wait(ref_for(log), threading.Event())
    assert grown.is_set(), "failed while the log was still growing"
    assert "MODEL_LOAD_TIMEOUT" in str(err.value) and "loading tensors" in str(err.value)


def test_exit_before_healthy_reports_the_runtime_reason(tmp_path):
    runtime = SlowRuntime(free_port(), RuntimeState("exited", 1, "exited with code 1:\nbad magic"))
    with pytest.raises(LaunchFailed, match="bad magic"):
        HealthWaiter(runtime, 0.2, 30).wait(ref_for(tmp_path / "x.log"), threading.Event())


def test_cancel_stops_the_wait(tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        HealthWaiter(SlowRuntime(free_port()), 0.2, 30).wait(ref_for(tmp_path / "x.log"), cancel)
