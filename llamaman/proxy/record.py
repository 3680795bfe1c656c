"""Recording inference requests of the instance ports: what the relay saw, as a compat Turn.

RecordingProxy is the sidecar with recording added around its steps: the turn of a request
lives in its environ, and a RecordedRelay hands every chunk it has already sent to the client
to `TurnTap.feed`. With recording off there is no turn and no tap: the plain Relay runs.
Finished turns go to the Recorder, which writes them on its own thread.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from llamaman.auth.keys import ApiKeyService
from llamaman.proxy import inference
from llamaman.proxy.admission import Admission, Pipeline
from llamaman.proxy.contract import Instances
from llamaman.proxy.sidecar import InstanceProxy, Relay
from llamaman.proxy.upstream import Response
from llamaman.recording.recorder import Recorder
from llamaman.recording.turn import Turn

log = logging.getLogger(__name__)
MODE_TTL_S = 1.0  # the recording mode is read at most once a second (a storage read), and
# again at once after a local settings save
TURN_KEY = "llamaman.turn"  # the environ key of a recorded request's turn
CLIENT_GONE = 499


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


class RecordingProxy(InstanceProxy):
    """The sidecar, recording its inference requests while recording is on."""

    def __init__(self, instance_id: str, instances: Instances, pipeline: Pipeline, keys: ApiKeyService,
                 require_auth: Callable[[], bool], recording: ProxyRecording) -> None:
        super().__init__(instance_id, instances, pipeline, keys, require_auth)
        self.recording = recording

    def serve(self, environ: dict, start_response: Callable, arrived: float) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in inference.INFERENCE_PATHS:
            turn = self.recording.begin(path, arrived)
            if turn is not None:
                environ[TURN_KEY] = turn
        return super().serve(environ, start_response, arrived)

    def check_model(self, environ: dict, body: object, loaded: str) -> None:
        turn = environ.get(TURN_KEY)
        if turn is None:
            inference.check_model(body, loaded)
            return
        requested = body.get("model") if isinstance(body, dict) else None
        describe(turn, body, requested if isinstance(requested, str) and requested else loaded, self.instance_id)
        inference.check_model(body, loaded)
        turn.model = loaded  # the model that serves it, however the client named it

    def refuse(self, environ: dict, start_response: Callable, status: int, message: str,
               admission: Admission | None) -> list[bytes]:
        answer = super().refuse(environ, start_response, status, message, admission)
        turn = environ.get(TURN_KEY)
        if turn is not None:
            if admission is not None and admission.waited_s is not None:  # it reached llama-server
                turn.instance_id, turn.waited_s = admission.member_id, admission.waited_s
            self.recording.refused(turn, status, message)
        return answer

    def relay(self, environ: dict, response: Response, admission: Admission | None) -> Relay:
        turn = environ.get(TURN_KEY)
        if turn is None or admission is None:
            return Relay(response, admission)
        turn.instance_id, turn.waited_s = admission.member_id, admission.waited_s
        tap = TurnTap(turn, response.status, response.headers.get("content-type") or "")
        return RecordedRelay(response, admission, tap, self.recording)


class RecordedRelay(Relay):
    """A relay that shows every chunk to the turn's tap once the client has it, and hands the
    finished turn to the recorder when the response ends."""

    __slots__ = ("recording", "tap")

    def __init__(self, response: Response, admission: Admission, tap: TurnTap,
                 recording: ProxyRecording) -> None:
        super().__init__(response, admission)
        self.tap = tap
        self.recording = recording

    def chunks(self) -> Iterator[bytes]:
        feed = self.tap.feed
        for chunk in self.response.stream():
            yield chunk
            feed(chunk)  # after the client has it

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            if not self.finished and self.broken is None:
                self.tap.turn.status, self.tap.turn.error = CLIENT_GONE, "client disconnected"
            self.recording.finish(self.tap, self.broken)


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

