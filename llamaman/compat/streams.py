"""Opening llama-server for a compat request, reading its SSE responses event by event, and
relaying them rewritten."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from urllib3.exceptions import HTTPError as Urllib3Error

from llamaman.errors import LlamamanError, UpstreamFailed
from llamaman.proxy.forward import Forwarder, Opened
from llamaman.proxy.upstream import body_chunks

DONE = object()
_DECODER = json.JSONDecoder()
# What can break a stream once it began: the connection (llama-server killed or crashed).
BROKEN = (Urllib3Error, OSError, LlamamanError)
CUT_SHORT = "llama-server stopped while streaming: the stream ended before it was complete"
CLIENT_GONE = (499, "client disconnected")


class StreamCut(UpstreamFailed):
    """The upstream stream ended without its final `[DONE]` event."""


def open_upstream(forwarder: Forwarder, instance_id: str, path: str, body: dict[str, Any]) -> Opened:
    """Forward a request; an unreachable llama-server raises UpstreamFailed (502, 504 when it timed out)."""
    return forwarder.open(instance_id, path, body)


def sse_events(opened: Opened) -> Iterator[Any]:
    """Each `data:` payload as parsed JSON, then DONE; comments and pings skipped.

    StreamCut when the body ends before its last event: `data: [DONE]` on the OpenAI routes,
    an event with `"stop": true` on llama-server's own /completion.
    """
    pending, complete = b"", False
    decode = _DECODER.decode
    for chunk in body_chunks(opened.response):
        lines = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line[:5] != b"data:":
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                yield DONE
                return
            try:
                event = decode(payload.decode())
            except ValueError:  # UnicodeDecodeError included
                continue
            complete = isinstance(event, dict) and event.get("stop") is True
            yield event
    if not complete:
        raise StreamCut(CUT_SHORT)


def broken_message(err: BaseException) -> str:
    """The error text a stream ends with when llama-server went away mid-stream."""
    return err.args[0] if isinstance(err, StreamCut) else f"llama-server stopped while streaming: {err}"


def relay_sse(opened: Opened, rewrite: Callable[[dict[str, Any]], dict[str, Any]],
              on_end: Callable[[tuple[int, str] | None], None] = lambda failure: None) -> Iterator[bytes]:
    """Relay an SSE stream with each JSON event rewritten; an upstream that breaks ends it with
    an error event; upstream closed early if the client leaves. on_end gets (status, error) of
    a failure, or None."""
    finished, failure = False, None
    try:
        for event in sse_events(opened):
            if event is DONE:
                yield b"data: [DONE]\n\n"
                break
            yield b"data: " + json.dumps(rewrite(event)).encode() + b"\n\n"
        finished = True
    except (StreamCut, *BROKEN) as err:
        failure = (502, broken_message(err))
        yield b"data: " + json.dumps({"error": {"message": failure[1], "type": "server_error", "code": 502}}).encode() + b"\n\n"
    except GeneratorExit:
        failure = CLIENT_GONE
        raise
    finally:
        opened.close(finished)
        on_end(failure)
