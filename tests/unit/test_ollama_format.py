"""Ollama ↔ llama-server translation (our own pure functions)."""
import json
from datetime import UTC, datetime

import pytest

from llamaman.compat import ollama_format as fmt
from llamaman.errors import Invalid


def test_chat_request_maps_options_format_tools_images_and_think():
    body = {
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "what is this?", "images": ["AAAA"]},
                     {"role": "assistant", "content": "", "tool_calls": [
                         {"function": {"name": "lookup", "arguments": {"q": "x"}}}]},
                     {"role": "tool", "content": "42"}],
        "options": {"num_predict": 7, "temperature": 0.1, "top_k": 3, "stop": ["\n"], "seed": 1, "num_ctx": 99},
        "format": {"type": "object"}, "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "think": True,
    }
    out = fmt.chat_request(body, stream=True)
    assert out["stream"] is True and out["max_tokens"] == 7 and out["temperature"] == 0.1
    assert out["top_k"] == 3 and out["stop"] == ["\n"] and out["seed"] == 1 and "num_ctx" not in out
    assert out["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}}
    assert out["tools"] == body["tools"] and out["chat_template_kwargs"] == {"enable_thinking": True}
    image_parts = out["messages"][1]["content"]
    assert image_parts[0] == {"type": "text", "text": "what is this?"}
    assert image_parts[1]["image_url"]["url"] == "data:image/png;base64,AAAA"
    call = out["messages"][2]["tool_calls"][0]
    assert call["function"] == {"name": "lookup", "arguments": '{"q": "x"}'}
    assert fmt.chat_request({"messages": [], "format": "json"}, False)["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("body", [
    {"messages": "hi"}, {"messages": [{"role": "robot", "content": "x"}]},
    {"messages": [{"role": "user", "content": 5}]}, {"messages": [], "options": []},
    {"messages": [], "options": {"temperature": "hot"}}, {"messages": [], "format": "yaml"},
    {"messages": [], "tools": {}}, {"messages": [{"role": "user", "content": "x", "images": [1]}]},
    {"messages": [], "think": "yes"}, {"messages": [], "think": 1},
    {"messages": [{"role": "assistant", "content": "", "tool_calls": {"function": {}}}]},
    {"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": "f"}]}]},
])
def test_bad_chat_bodies_are_invalid(body):
    with pytest.raises(Invalid):
        fmt.chat_request(body, stream=False)


def test_think_levels_and_tool_answers():
    out = fmt.chat_request({"messages": [{"role": "tool", "content": "18C", "tool_name": "get_weather"}],
                            "think": "high"}, stream=False)
    assert out["chat_template_kwargs"] == {"enable_thinking": True, "reasoning_effort": "high"}
    assert out["messages"] == [{"role": "tool", "content": "18C", "name": "get_weather"}]
    assert fmt.chat_request({"messages": [], "think": False}, False)["chat_template_kwargs"] == {"enable_thinking": False}
    assert "chat_template_kwargs" not in fmt.chat_request({"messages": []}, False)


def test_generate_uses_chat_unless_raw():
    path, out = fmt.generate_request({"prompt": "hi", "system": "sys"}, stream=False)
    assert path == "/v1/chat/completions"
    assert [m["role"] for m in out["messages"]] == ["system", "user"]
    path, out = fmt.generate_request({"prompt": "hi", "raw": True, "options": {"num_predict": 2}}, stream=True)
    assert path == "/v1/completions" and out == {"prompt": "hi", "stream": True, "max_tokens": 2}


def test_durations_come_from_llama_server_timings():
    timings = {"prompt_n": 12, "prompt_ms": 30.5, "predicted_n": 20, "predicted_ms": 400.25}
    out = fmt.durations(timings, total_s=1.5, waited_s=0.75)
    assert out == {"total_duration": 1_500_000_000, "load_duration": 750_000_000, "prompt_eval_count": 12,
                   "prompt_eval_duration": 30_500_000, "eval_count": 20, "eval_duration": 400_250_000}
    assert fmt.durations(None, 1, 0)["eval_count"] == 0


def test_streamed_tool_calls_are_joined_with_object_arguments():
    assembler = fmt.ToolCallAssembler()
    assembler.feed([{"index": 0, "function": {"name": "get_", "arguments": '{"ci'}}])
    assembler.feed([{"index": 0, "function": {"name": "weather", "arguments": 'ty": "Paris"}'}}])
    assembler.feed([{"index": 1, "function": {"name": "noop", "arguments": ""}}])
    assert assembler.result() == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                                  {"function": {"name": "noop", "arguments": {}}}]


@pytest.mark.parametrize("value, seconds", [
    (None, None), (0, 0.0), (300, 300.0), ("5m", 300.0), ("1h", 3600.0), ("30s", 30.0), ("-1", -1.0),
    ("250ms", 0.25), (-1, -1.0),
])
def test_keep_alive_durations(value, seconds):
    assert fmt.keep_alive_seconds(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", True, [], "1d"])
def test_bad_keep_alive(value):
    with pytest.raises(Invalid):
        fmt.keep_alive_seconds(value)


def test_delta_lines_are_one_json_object_each():
    before = datetime.now(UTC).replace(microsecond=0)
    line = fmt.DeltaLines('we"ird', "chat").line("a\nb", "hmm")
    after = datetime.now(UTC)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed = json.loads(line)
    assert parsed["model"] == 'we"ird' and parsed["done"] is False
    assert parsed["message"] == {"role": "assistant", "content": "a\nb", "thinking": "hmm"}
    assert parsed["created_at"].endswith("Z") and before <= datetime.fromisoformat(parsed["created_at"]) <= after
    generated = json.loads(fmt.DeltaLines("m", "generate").line("x"))
    assert generated["response"] == "x" and "thinking" not in generated and "message" not in generated
