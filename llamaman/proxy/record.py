"""Recording inference requests of the instance ports: what the relay saw, as a compat Turn.

The relay hands every chunk it has already sent to the client to `TurnTap.feed`; with
recording off there is no tap and no extra work at all. Finished turns go to the Recorder,
which writes them on its own thread.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from llamaman.recording.recorder import Recorder
from llamaman.recording.turn import Turn

log = logging.getLogger(__name__)
MODE_TTL_S = 1.0  # the recording mode is read at most once a second (a storage read), and
# again at once after a local settings save


class ProxyRecording:
    """Whether sidecar requests are recorded now, and the hand-over of their turns."""

    def __init__(self, recorder: Recorder, clock: Callable[[], float] = time.monotonic) -> None:
        self.recorder = recorder
        self.clock = clock
        self._mode: tuple[float, int, bool] | None = None  # (read at, settings generation, on)

    def enabled(self) -> bool:
        cached = self._mode
        generation = self.recorder.mode_version()
        if cached is not None and cached[1] == generation and self.clock() - cached[0] <= MODE_TTL_S:
            return cached[2]
        on = self.recorder.enabled()
        self._mode = (self.clock(), generation, on)
        return on

    def begin(self, path: str, arrived: float) -> Turn | None:
        """A turn for an inference request that arrived at `arrived` (None when recording is off)."""
        if not self.enabled():
            return None
        turn = Turn(path, "", {}, False)
        turn.arrived = arrived
        turn.started_at = time.time() - (time.monotonic() - arrived)
        return turn

    def refused(self, turn: Turn, status: int, message: str) -> None:
        """Record a request the proxy answered itself (404, 429, 502, 503, 504...)."""
        turn.status, turn.error = status, message
        self.recorder.submit(turn.as_record())

    def finish(self, tap: TurnTap, broken: str | None) -> None:
        tap.close(broken)
        self.recorder.submit(tap.turn.as_record())


def describe(turn: Turn, body: Any, model: str, instance_id: str) -> None:
    """Fill in what the request asked for (the body as parsed for the model check)."""
    turn.request = body if isinstance(body, dict) else {}
    turn.streamed = turn.request.get("stream") is True
    turn.model = model
    turn.instance_id = instance_id


class TurnTap:
    """Observes a response as it is relayed: SSE events one by one, a JSON body at the end."""

    def __init__(self, turn: Turn, status: int, content_type: str) -> None:
        self.turn = turn
        turn.status = status
        turn.streamed = content_type.startswith("text/event-stream")
        self._pending = b""
        self._whole: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        """Take one relayed chunk (already sent to the client)."""
        if not self.turn.streamed:
            self._whole.append(chunk)
            return
        lines = (self._pending + chunk).split(b"\n") if self._pending else chunk.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if line[:5] == b"data:":
                self._observe(line[5:])

    def close(self, broken: str | None) -> None:
        if self._whole:
            self._observe(b"".join(self._whole))
        if broken is not None:
            self.turn.status, self.turn.error = 502, broken

    def _observe(self, payload: bytes) -> None:
        payload = payload.strip()
        if not payload or payload == b"[DONE]":
            return
        try:
            event = json.loads(payload)
            if isinstance(event, dict):
                self.turn.observe(event)
        except Exception:  # an odd event must never break the relay
            log.debug("could not record an event of %s", self.turn.endpoint, exc_info=True)

