"""Ollama chat and generate on :42069 (and :5000): on-demand loading, strict NDJSON streaming."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, stream_with_context
from urllib3.exceptions import HTTPError as Urllib3Error

from llamaman.compat import ollama_format as fmt
from llamaman.compat.streams import DONE, sse_events
from llamaman.compat.turns import Turn
from llamaman.errors import Invalid, LlamamanError, NotFound
from llamaman.http import json_body, services
from llamaman.proxy.forward import Opened
from llamaman.scheduler import API_LAUNCHERS
from llamaman.validation import get_bool, get_str

bp = Blueprint("ollama", __name__)
NDJSON = "application/x-ndjson"


@bp.post("/api/chat")
def chat():
    return _serve("chat")


@bp.post("/api/generate")
def generate():
    return _serve("generate")


def _serve(kind: str):
    body = json_body()
    name = get_str(body, "model", required=True, allow_empty=False)
    stream = get_bool(body, "stream", default=True)
    turn = Turn(f"/api/{kind}", name, body, stream)
    keep_alive = fmt.keep_alive_seconds(body.get("keep_alive"))
    svc = services()
    if keep_alive == 0 and _load_only(kind, body):
        _unload(name)
        return jsonify({**_head(name, kind, ""), "done": True, "done_reason": "unload"})
    load_only = _load_only(kind, body)
    if not load_only:  # validate before anything starts
        path, upstream = (("/v1/chat/completions", fmt.chat_request(body, stream)) if kind == "chat"
                          else fmt.generate_request(body, stream))
    with svc.scheduler.serving(name, "ollama") as instance_id:
        if keep_alive is not None:
            _keep(instance_id, keep_alive)
        if load_only:
            svc.instances.ensure_running(instance_id, svc.config.request_timeout)
            return jsonify({**_head(name, kind, ""), "done": True, "done_reason": "load"})
        opened = svc.forwarder.open(instance_id, path, upstream)
    turn.instance_id, turn.waited_s = opened.ticket.member_id, opened.waited_s
    if opened.response.status >= 400:
        return _upstream_error(opened, turn)
    if not stream:
        return jsonify(_whole(opened, name, kind, turn))
    lines = _ndjson(opened, name, kind, turn)
    return Response(stream_with_context(lines), mimetype=NDJSON)


def _unload(name: str) -> None:
    """keep_alive 0 (Open WebUI's unload): stop the API-launched instances of the model."""
    svc = services()
    entry = svc.library.find(name)
    if entry is None:
        raise NotFound(f"model '{name}' not found")
    for instance in svc.instances.list():
        if instance["model_path"] == entry["path"] and instance.get("launched_by") in API_LAUNCHERS \
                and instance["status"] in ("starting", "healthy", "sleeping"):
            svc.instances.stop(instance["id"])


def _keep(instance_id: str, seconds: float) -> None:
    """A keep_alive duration sets the idle timeout of an API-launched model (negative: forever)."""
    svc = services()
    if svc.instances.get(instance_id).get("launched_by") in API_LAUNCHERS:
        svc.instances.update_options(instance_id, {"idle_timeout_min": max(0.0, seconds / 60)})


def _load_only(kind: str, body: dict[str, Any]) -> bool:
    """An empty message list (chat) or a missing prompt (generate) just loads the model."""
    if kind == "chat":
        messages = body.get("messages")
        if messages is not None and not isinstance(messages, list):
            raise Invalid("'messages' must be a list of objects")
        return not messages
    return not body.get("prompt")


def _head(name: str, kind: str, text: str, thinking: str = "") -> dict[str, Any]:
    head: dict[str, Any] = {"model": name, "created_at": fmt.now_iso()}
    if kind == "chat":
        head["message"] = {"role": "assistant", "content": text}
        if thinking:
            head["message"]["thinking"] = thinking
    else:
        head["response"] = text
        if thinking:
            head["thinking"] = thinking
    return head


def _upstream_error(opened: Opened, turn: Turn):
    status = opened.response.status
    raw = opened.response.read()
    opened.close()
    try:
        error = json.loads(raw).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = raw.decode("utf-8", "replace")[:500]
    message = message or f"llama-server answered {status}"
    turn.status, turn.error = status, message
    services().recorder.submit(turn.as_record())
    return jsonify({"error": message}), status


def _whole(opened: Opened, name: str, kind: str, turn: Turn) -> dict[str, Any]:
    try:
        data = json.loads(opened.response.read())
    finally:
        opened.close()
    turn.observe(data)
    services().recorder.submit(turn.as_record())
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content") if kind == "chat" or "message" in choice else choice.get("text")
    result = _head(name, kind, text or choice.get("text") or "", message.get("reasoning_content") or "")
    if message.get("tool_calls") and kind == "chat":
        result["message"]["tool_calls"] = fmt.ollama_tool_calls(message["tool_calls"])
    return {**result, "done": True, "done_reason": fmt.done_reason(choice.get("finish_reason")),
            **fmt.durations(data.get("timings"), time.monotonic() - turn.arrived, opened.waited_s)}


def _ndjson(opened: Opened, name: str, kind: str, turn: Turn) -> Iterator[str]:
    """One JSON object per line: content deltas, then the final statistics."""
    finished, finish_reason = False, None
    tools = fmt.ToolCallAssembler()
    recorder = services().recorder  # read now: the generator outlives the request context
    try:
        for event in sse_events(opened):
            if event is DONE:
                break
            turn.observe(event)
            for choice in event.get("choices") or []:
                finish_reason = choice.get("finish_reason") or finish_reason
                delta = choice.get("delta") or {}
                tools.feed(delta.get("tool_calls") or [])
                text = delta.get("content") or choice.get("text") or ""
                thinking = delta.get("reasoning_content") or ""
                if text or thinking:
                    yield json.dumps({**_head(name, kind, text, thinking), "done": False}) + "\n"
        finished = True
    except (Urllib3Error, OSError, LlamamanError) as err:
        turn.status, turn.error = 502, f"llama-server stopped while streaming: {err}"
        yield json.dumps({"error": turn.error}) + "\n"
        return
    finally:
        opened.close(finished)
        recorder.submit(turn.as_record())
    if tools.calls and kind == "chat":
        yield json.dumps({**_head(name, kind, ""), "message": {
            "role": "assistant", "content": "", "tool_calls": tools.result()}, "done": False}) + "\n"
    yield json.dumps({**_head(name, kind, ""), "done": True, "done_reason": fmt.done_reason(finish_reason),
                      **fmt.durations(turn.timings, time.monotonic() - turn.arrived, opened.waited_s)}) + "\n"
