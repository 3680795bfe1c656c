"""e2e hygiene: llama-servers that a test's manager left running (a kill -9 leaves them, by
design, for adoption) are stopped when the test ends. Only servers whose log lies under this
pytest session's temp dir are touched, so concurrent sessions keep theirs."""
import os
import signal

import psutil
import pytest

from tests.e2e.browserkit import open_browser

LOG_ENV = "LLAMAMAN_LOG_PATH"


def session_servers(base: str) -> set[int]:
    """Pids of native llama-servers launched by a manager of this test session."""
    found = set()
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(LOG_ENV, "").startswith(base):
                found.add(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture(autouse=True)
def stop_leftover_servers(tmp_path_factory):
    base = str(tmp_path_factory.getbasetemp())
    before = session_servers(base)
    yield
    for pid in session_servers(base) - before:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def launched(manager, model_path):
    """Launch healthy instances on the module's `manager`; stop them (and drop the model's
    preset) when the test ends."""
    ids = []

    def launch(**fields):
        instance = manager.wait_status(manager.launch(model_path, **fields)["id"], "healthy")
        ids.append(instance["id"])
        return instance
    yield launch
    for instance_id in ids:
        manager.api.delete(manager.url(f"/api/instances/{instance_id}"))
    manager.api.delete(manager.url(f"/api/presets{model_path}"))


@pytest.fixture(scope="module")
def browser(chromium_path):
    """One headless Chromium per test module (each test opens its own context)."""
    with open_browser(chromium_path) as browser:
        yield browser
