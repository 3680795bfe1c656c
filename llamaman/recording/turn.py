"""What one compat request did, collected while it streams, for request recording."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llamaman.errors import LlamamanError

if TYPE_CHECKING:
    from llamaman.recording.recorder import Recorder


@dataclass
class Turn:
    endpoint: str
    model: str
    request: dict[str, Any]
    streamed: bool
    arrived: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    instance_id: str | None = None
    waited_s: float = 0.0
    first_token: float | None = None
    parts: list[str] = field(default_factory=list)
    timings: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    status: int = 200
    error: str | None = None

    def observe(self, event: dict[str, Any]) -> None:
        """Take the content, timings and usage of one llama-server event or response."""
        self.timings = event.get("timings") or self.timings
        self.usage = event.get("usage") or self.usage
        if "choices" not in event:  # llama-server's own /completion: the text is the event's content
            self.observe_text(event.get("content"))
        for choice in event.get("choices") or []:
            message = choice.get("delta") or choice.get("message") or {}
            self.observe_text(message.get("content") or choice.get("text") or "")
        if self.status >= 400 and self.error is None and event.get("error") is not None:
            self.error = str(event["error"])[:500]

    def observe_text(self, text: Any) -> None:
        """Take a piece of content (the first one sets the time to first token)."""
        if text and isinstance(text, str):
            if self.first_token is None:
                self.first_token = time.monotonic()
            self.parts.append(text)

    def as_record(self) -> dict[str, Any]:
        """The envelope the recorder stores (it adds id, ts, conversation id and caps)."""
        timings = self.timings or {}
        usage = self.usage or {}
        predicted_ms = timings.get("predicted_ms") or 0
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "inst_id": self.instance_id,
            "status": self.status,
            "streamed": self.streamed,
            "started_at": self.started_at,
            "duration_s": time.monotonic() - self.arrived,
            "ttft_s": self.first_token - self.arrived if self.first_token is not None else None,
            "queue_wait_s": self.waited_s,
            "prompt_tokens": timings.get("prompt_n", usage.get("prompt_tokens")),
            "completion_tokens": timings.get("predicted_n", usage.get("completion_tokens")),
            "gen_tps": timings["predicted_n"] * 1000.0 / predicted_ms if predicted_ms else None,
            "request": self.request,
            "response": "".join(self.parts),
            "error": self.error,
        }


@contextmanager
def refusals_recorded(turn: Turn, recorder: Recorder) -> Iterator[None]:
    """Record a request refused before it reached llama-server (unknown model, bad input,
    model cap reached) with its status and error, then let the refusal go on to the client."""
    try:
        yield
    except LlamamanError as err:
        turn.status, turn.error = err.status, err.message
        recorder.submit(turn.as_record())
        raise
