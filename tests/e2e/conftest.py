"""e2e hygiene: llama-servers that a test's manager left running (a kill -9 leaves them, by
design, for adoption) are stopped when the test ends."""
import os
import signal

import psutil
import pytest

MARKER = "LLAMAMAN_INSTANCE_ID"


def product_servers() -> set[int]:
    """Pids of native llama-servers launched by a llamaman manager (they carry MARKER)."""
    found = set()
    for proc in psutil.process_iter(["pid"]):
        try:
            if MARKER in proc.environ():
                found.add(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture(autouse=True)
def stop_leftover_servers():
    before = product_servers()
    yield
    for pid in product_servers() - before:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
