"""Helpers shared by the runtime tests (contract suite and runtime-specific files; no tests here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from llamaman.runtime.base import RuntimeRef, RuntimeState


class Exits:
    """Collects what a runtime's exit listener is told."""

    def __init__(self) -> None:
        self.events: list[tuple[RuntimeRef, RuntimeState]] = []
        self.arrived = threading.Event()

    def __call__(self, ref: RuntimeRef, state: RuntimeState) -> None:
        self.events.append((ref, state))
        self.arrived.set()

    def wait(self, timeout: float = 15.0) -> tuple[RuntimeRef, RuntimeState]:
        """The last reported exit; fails when none arrives within timeout."""
        assert self.arrived.wait(timeout), "the exit was not reported"
        return self.events[-1]


def read_text(path: Path) -> str:
    """The file's text, or "" while it does not exist."""
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for_text(path: Path, text: str, timeout: float = 10) -> None:
    """Wait until text appears in the file."""
    wait_until(lambda: text in read_text(path), timeout, f"{text!r} never reached {path}")


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll condition until it holds; fail with `what` after timeout (a hang guard)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
