"""Request recording: turns are handed over here and written off the request thread."""
from __future__ import annotations

from typing import Any

from llamaman.settings.service import SettingsService
from llamaman.storage.base import RequestLogRepository


class Recorder:
    """Accepts finished turns (filled in by the recording work: queue, writer thread, caps)."""

    def __init__(self, repo: RequestLogRepository, settings: SettingsService) -> None:
        self.repo = repo
        self.settings = settings

    def enabled(self) -> bool:
        return self.settings.get()["request_recording_mode"] != "off"

    def submit(self, turn: dict[str, Any]) -> None:
        """Queue one finished turn for writing; never blocks or raises."""

    def start(self) -> None:
        """Start the writer and the hourly retention pruning."""

    def stop(self) -> None:
        """Flush what is queued and stop."""
