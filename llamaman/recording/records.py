"""Turning a finished turn into a stored request-log record: ids, conversation key, size caps.

Caps: the request body (as JSON text) and the response text are each stored up to
BODY_CAP_BYTES (64 KiB of UTF-8); a longer one is cut there and flagged
`request_truncated` / `response_truncated` (a cut request is kept as JSON text, not an object).
Error messages are cut at ERROR_CAP_BYTES.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

BODY_CAP_BYTES = 64 * 1024
ERROR_CAP_BYTES = 4 * 1024
TITLE_CHARS = 120
CONVERSATION_ID_LEN = 32
_SYSTEM_ROLES = ("system", "developer")
_METRIC_FIELDS = ("endpoint", "model", "inst_id", "status", "streamed", "duration_s", "ttft_s",
                  "queue_wait_s", "prompt_tokens", "completion_tokens", "gen_tps")


def text_of(content: Any) -> str:
    """The text of a message content: a string, OpenAI content parts, or anything else as JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(str(p.get("text", "")) for p in content if p.get("type", "text") == "text")
    return json.dumps(content, sort_keys=True, ensure_ascii=False)


def opening(request: dict[str, Any]) -> tuple[str, str]:
    """The system prompt and first user message of a chat request (or system + prompt)."""
    messages = request.get("messages")
    if isinstance(messages, list):
        return _first(messages, _SYSTEM_ROLES), _first(messages, ("user",))
    return text_of(request.get("system")), text_of(request.get("prompt"))


def _first(messages: list[Any], roles: tuple[str, ...]) -> str:
    for message in messages:
        if isinstance(message, dict) and message.get("role") in roles:
            return text_of(message.get("content"))
    return ""


def conversation_id(request: dict[str, Any]) -> str | None:
    """Hash of system prompt + first user message; None when the request has neither."""
    system, user = opening(request)
    if not system and not user:
        return None
    digest = hashlib.sha256(json.dumps([system, user], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:CONVERSATION_ID_LEN]


def cut_utf8(text: str, cap: int) -> tuple[str, bool]:
    """Text cut to at most cap UTF-8 bytes (never inside a character), and whether it was cut."""
    data = text.encode("utf-8")
    if len(data) <= cap:
        return text, False
    return data[:cap].decode("utf-8", "ignore"), True


def capped_request(request: Any) -> tuple[Any, bool]:
    """The request body as stored: the object itself, or its JSON text cut to the cap."""
    raw = json.dumps(request, ensure_ascii=False)
    if len(raw.encode("utf-8")) <= BODY_CAP_BYTES:
        return request, False
    return cut_utf8(raw, BODY_CAP_BYTES)


def title_of(request: dict[str, Any]) -> str:
    """A short label for the conversation list: the first user message (or prompt)."""
    system, user = opening(request)
    return " ".join((user or system).split())[:TITLE_CHARS]


def build_record(turn: dict[str, Any], mode: str) -> dict[str, Any]:
    """The stored record of one turn under a recording mode (per_request or per_conversation)."""
    record_id = uuid.uuid4().hex
    request = turn.get("request") if isinstance(turn.get("request"), dict) else {}
    conversation = conversation_id(request) if mode == "per_conversation" else None
    stored_request, request_cut = capped_request(request)
    response, response_cut = cut_utf8(str(turn.get("response") or ""), BODY_CAP_BYTES)
    error = turn.get("error")
    return {
        "id": record_id,
        "ts": float(turn["started_at"]),
        "mode": mode,
        "conversation_id": conversation or record_id,
        "title": title_of(request),
        **{key: turn.get(key) for key in _METRIC_FIELDS},
        "request": stored_request,
        "request_truncated": request_cut,
        "response": response,
        "response_truncated": response_cut,
        "error": cut_utf8(str(error), ERROR_CAP_BYTES)[0] if error is not None else None,
    }
