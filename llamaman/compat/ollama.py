"""Ollama chat and generate on :42069 (and :5000): on-demand loading, strict NDJSON streaming."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify

from llamaman.compat import ollama_format as fmt
from llamaman.compat import streams
from llamaman.errors import Invalid, NotFound
from llamaman.proxy.forward import Opened
from llamaman.recording.recorder import Recorder
from llamaman.recording.turn import Turn, refusals_recorded
from llamaman.scheduler import API_LAUNCHERS
from llamaman.validation import get_bool, get_str
from llamaman.webio import json_body, services

bp = Blueprint("ollama", __name__)
NDJSON = "application/x-ndjson"
_MEDIA_UNSUPPORTED = re.compile(r"\b(image|audio) input is not supported")


@bp.post("/api/chat")
def chat():
    return _serve("chat")


@bp.post("/api/generate")
def generate():
    return _serve("generate")


def _serve(kind: str):
    body = json_body()
    name = get_str(body, "model", required=True, allow_empty=False)
    svc = services()
    turn = Turn(f"/api/{kind}", name, body, body.get("stream") is not False)
    with refusals_recorded(turn, svc.recorder):
        stream = get_bool(body, "stream", default=True)
        keep_alive = fmt.keep_alive_seconds(body.get("keep_alive"))
        load_only = _load_only(kind, body)
        if keep_alive == 0 and load_only:
            _unload(name)
            return jsonify({**_head(name, kind, ""), "done": True, "done_reason": "unload"})
        if not load_only:  # validate before anything starts
            path, upstream = (("/v1/chat/completions", fmt.chat_request(body, stream)) if kind == "chat"
                              else fmt.generate_request(body, stream))
        with svc.scheduler.serving(name, "ollama") as instance_id:
            if keep_alive is not None:
                _keep(instance_id, keep_alive)
            if load_only:
                svc.instances.ensure_running(instance_id, svc.config.request_timeout)
                return jsonify({**_head(name, kind, ""), "done": True, "done_reason": "load"})
            opened = streams.open_upstream(svc.forwarder, instance_id, path, upstream)
    turn.instance_id, turn.waited_s = opened.ticket.member_id, opened.waited_s
    if opened.response.status >= 400:
        return _upstream_error(opened, turn)
    if not stream:
        return jsonify(_whole(opened, name, kind, turn))
    return Response(_ndjson(opened, name, kind, turn, svc.recorder), mimetype=NDJSON)


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
    """llama-server refused the request: its status and message, as an Ollama error."""
    status = opened.response.status
    raw = opened.response.read()
    opened.close()
    message = _error_message(raw) or f"llama-server answered {status}"
    unsupported = _MEDIA_UNSUPPORTED.search(message)
    if unsupported and status >= 500:  # the request asked for more than the model can do
        status = 400
        message = (f"model '{turn.model}' does not accept {unsupported.group(1)} input (no multimodal "
                   f"projector is loaded for it); llama-server said: {message}")
    turn.status, turn.error = status, message
    services().recorder.submit(turn.as_record())
    return jsonify({"error": message}), status


def _error_message(raw: bytes) -> str:
    try:
        error = json.loads(raw).get("error")
        return (error.get("message") if isinstance(error, dict) else error) or ""
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace")[:500]


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


def _ndjson(opened: Opened, name: str, kind: str, turn: Turn, recorder: Recorder) -> Iterator[bytes | str]:
    """One JSON object per line: content deltas, then the final statistics (or an error line
    when llama-server goes away mid-stream). Runs after the request context is gone."""
    finished, finish_reason = False, None
    tools, lines = fmt.ToolCallAssembler(), fmt.DeltaLines(name, kind)
    try:
        for event in streams.sse_events(opened):
            if event is streams.DONE:
                break
            turn.observe(event)
            for choice in event.get("choices") or ():
                finish_reason = choice.get("finish_reason") or finish_reason
                delta = choice.get("delta") or {}
                if delta.get("tool_calls"):
                    tools.feed(delta["tool_calls"])
                text = delta.get("content") or choice.get("text") or ""
                thinking = delta.get("reasoning_content") or ""
                if text or thinking:
                    yield lines.line(text, thinking)
        finished = True
    except (streams.StreamCut, *streams.BROKEN) as err:
        turn.status, turn.error = 502, streams.broken_message(err)
    except GeneratorExit:
        turn.status, turn.error = streams.CLIENT_GONE
        raise
    finally:
        opened.close(finished)
        recorder.submit(turn.as_record())
    if turn.error is not None:
        yield json.dumps({"error": turn.error}) + "\n"
        return
    if tools.calls and kind == "chat":
        yield json.dumps({**_head(name, kind, ""), "message": {
            "role": "assistant", "content": "", "tool_calls": tools.result()}, "done": False}) + "\n"
    yield json.dumps({**_head(name, kind, ""), "done": True, "done_reason": fmt.done_reason(finish_reason),
                      **fmt.durations(turn.timings, time.monotonic() - turn.arrived, opened.waited_s)}) + "\n"
