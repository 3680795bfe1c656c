"""Forwarding a request of the compat API to an instance through the same pipeline as its
sidecar (gate, wake, sampling overrides), over the shared upstream pool."""
from __future__ import annotations

import json
import time
from typing import Any

from llamaman.proxy.admission import Admission, Pipeline
from llamaman.proxy.upstream import Response


class Opened:
    """An upstream response in flight; close() releases the gate slot (once)."""

    __slots__ = ("closed", "response", "ticket")

    def __init__(self, admission: Admission, response: Response) -> None:
        self.ticket = admission
        self.response = response
        self.closed = False

    @property
    def waited_s(self) -> float:
        """Queueing and loading before the request reached llama-server."""
        return self.ticket.waited_s or 0.0

    def close(self, finished: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if finished:
                self.response.drain_conn()  # reads what is left (e.g. after [DONE]) so the connection can be reused
            else:
                self.response.close()  # stop generating for a client that went away
            self.response.release_conn()
        finally:
            self.ticket.release()


def _never() -> bool:
    return False


class Forwarder:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def open(self, instance_id: str, path: str, body: dict[str, Any]) -> Opened:
        """Admit, wake if needed, apply overrides, and send; the caller must close() the result."""
        raw = json.dumps(body).encode()
        admission = self.pipeline.admit(instance_id, _never, time.monotonic())
        response = self.pipeline.open(admission, instance_id, None, "POST", path,
                                      {"Content-Type": "application/json"}, raw, body)
        return Opened(admission, response)
