"""Translation between Ollama's chat/generate format and llama-server's OpenAI format."""
from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from llamaman.errors import Invalid

OPTIONS = {
    "temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
    "typical_p": "typical_p", "seed": "seed", "stop": "stop", "num_predict": "max_tokens",
    "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
    "mirostat": "mirostat", "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta",
}
_NUMBER_OPTIONS = set(OPTIONS) - {"stop", "seed"}
_ROLES = ("system", "user", "assistant", "tool")
THINK_LEVELS = ("low", "medium", "high")


_second: tuple[int, str] = (0, "")


def now_iso() -> str:
    """The current UTC time, RFC 3339 with microseconds (the date part formatted once a second)."""
    global _second
    now = time.time()
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{int((now - whole) * 1e6):06d}Z"


class DeltaLines:
    """Encodes the streamed content lines of one response, the constant parts encoded once."""

    def __init__(self, name: str, kind: str) -> None:
        self._start = '{"model":' + json.dumps(name) + ',"created_at":"'
        self._chat = kind == "chat"

    def line(self, text: str, thinking: str = "") -> bytes:
        """One `done: false` line carrying a piece of content (and/or thinking)."""
        extra = ',"thinking":' + json.dumps(thinking) if thinking else ""
        if self._chat:
            body = '","message":{"role":"assistant","content":' + json.dumps(text) + extra + "}"
        else:
            body = '","response":' + json.dumps(text) + extra
        return (self._start + now_iso() + body + ',"done":false}\n').encode()


def chat_request(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """The llama-server /v1/chat/completions body for an Ollama /api/chat body."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise Invalid("'messages' must be a list of objects")
    out: dict[str, Any] = {"messages": [_message(m) for m in messages], "stream": stream}
    _common(body, out)
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise Invalid("'tools' must be a list")
        out["tools"] = tools
    return out


def generate_request(body: dict[str, Any], stream: bool) -> tuple[str, dict[str, Any]]:
    """The llama-server path and body for an Ollama /api/generate body."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise Invalid("'prompt' must be a string")
    if body.get("raw"):
        out: dict[str, Any] = {"prompt": prompt, "stream": stream}
        _common(body, out)
        return "/v1/completions", out
    messages = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt, "images": body.get("images")})
    return "/v1/chat/completions", chat_request({**body, "messages": messages}, stream)


def _message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role not in _ROLES:
        raise Invalid(f"message role must be one of {', '.join(_ROLES)}")
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise Invalid("message 'content' must be a string")
    out: dict[str, Any] = {"role": role, "content": content}
    images = message.get("images")
    if images:
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise Invalid("message 'images' must be a list of base64 strings")
        out["content"] = [{"type": "text", "text": content}] + [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}} for image in images]
    if message.get("tool_calls"):
        calls = message["tool_calls"]
        if not isinstance(calls, list):
            raise Invalid("message 'tool_calls' must be a list")
        out["tool_calls"] = [_openai_tool_call(i, c) for i, c in enumerate(calls)]
    if role == "tool" and isinstance(message.get("tool_name"), str):
        out["name"] = message["tool_name"]  # which tool answered (Ollama's field)
    return out


def _openai_tool_call(index: int, call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise Invalid("each tool call needs a 'function' object")
    arguments = function.get("arguments", {})
    return {"id": f"call_{index}", "type": "function",
            "function": {"name": function.get("name", ""),
                         "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}}


def _common(body: dict[str, Any], out: dict[str, Any]) -> None:
    """Options, format and think, shared by chat and generate."""
    options = body.get("options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise Invalid("'options' must be an object")
    for name, value in options.items():
        if name in _NUMBER_OPTIONS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise Invalid(f"option '{name}' must be a number")
        if name in OPTIONS:
            out[OPTIONS[name]] = value
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    elif fmt not in (None, ""):
        raise Invalid("'format' must be \"json\" or a JSON schema object")
    _think(body.get("think"), out)


def _think(think: Any, out: dict[str, Any]) -> None:
    """`think` turns the template's thinking on or off; a level also asks for that effort."""
    if think is None:
        return
    if isinstance(think, bool):
        out["chat_template_kwargs"] = {"enable_thinking": think}
    elif think in THINK_LEVELS:
        out["chat_template_kwargs"] = {"enable_thinking": True, "reasoning_effort": think}
    else:
        raise Invalid("'think' must be true, false, \"low\", \"medium\" or \"high\"")


def durations(timings: dict[str, Any] | None, total_s: float, waited_s: float) -> dict[str, int]:
    """Ollama's integer-nanosecond statistics from llama-server's timings."""
    timings = timings or {}
    return {
        "total_duration": int(total_s * 1e9),
        "load_duration": int(waited_s * 1e9),
        "prompt_eval_count": int(timings.get("prompt_n") or 0),
        "prompt_eval_duration": int((timings.get("prompt_ms") or 0) * 1e6),
        "eval_count": int(timings.get("predicted_n") or 0),
        "eval_duration": int((timings.get("predicted_ms") or 0) * 1e6),
    }


def done_reason(finish_reason: str | None) -> str:
    return "length" if finish_reason == "length" else "stop"


def ollama_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI tool calls (arguments as JSON text) → Ollama's (arguments as objects)."""
    out = []
    for call in calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            parsed = {"raw": arguments}
        out.append({"function": {"name": function.get("name", ""), "arguments": parsed}})
    return out


class ToolCallAssembler:
    """Joins streamed tool-call deltas (by index) into whole calls."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, Any]] = {}

    def feed(self, deltas: list[dict[str, Any]]) -> None:
        for delta in deltas:
            call = self.calls.setdefault(delta.get("index", 0), {"function": {"name": "", "arguments": ""}})
            function = delta.get("function") or {}
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""

    def result(self) -> list[dict[str, Any]]:
        return ollama_tool_calls([self.calls[i] for i in sorted(self.calls)])


_DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def keep_alive_seconds(value: Any) -> float | None:
    """Ollama's keep_alive (seconds as a number, or "5m", "1h", "-1"...); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise Invalid("'keep_alive' must be a duration like \"5m\" or a number of seconds")
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise Invalid("'keep_alive' must be a duration like \"5m\" or a number of seconds")
    return float(match.group(1)) * _UNIT_S[match.group(2)]
