"""Reading llama-server's SSE responses event by event, and relaying them rewritten."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from urllib3.exceptions import HTTPError as Urllib3Error

from llamaman.proxy.forward import Opened
from llamaman.proxy.upstream import body_chunks

DONE = object()


def sse_events(opened: Opened) -> Iterator[Any]:
    """Each `data:` payload as parsed JSON (DONE for `[DONE]`); comments and pings skipped."""
    pending = b""
    for chunk in body_chunks(opened.response):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                yield DONE
                return
            try:
                yield json.loads(payload)
            except ValueError:
                continue


def relay_sse(opened: Opened, rewrite: Callable[[dict[str, Any]], dict[str, Any]],
              on_end: Callable[[], None] = lambda: None) -> Iterator[bytes]:
    """Relay an SSE stream with each JSON event rewritten; upstream closed early if the client leaves."""
    finished = False
    try:
        for event in sse_events(opened):
            if event is DONE:
                yield b"data: [DONE]\n\n"
                break
            yield b"data: " + json.dumps(rewrite(event)).encode() + b"\n\n"
        finished = True
    except (Urllib3Error, OSError):
        yield b'data: {"error": {"message": "llama-server stopped while streaming"}}\n\n'
    finally:
        opened.close(finished)
        on_end()
