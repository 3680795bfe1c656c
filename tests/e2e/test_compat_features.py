"""Ollama `tools`, `think` and `images` end to end, through the real `ollama` client and the real
llama-server with the real gemma-3-270m model.

The GGUF's own chat template knows neither tools nor thinking, so the tools and think tests run
the model under chat templates given here (`--jinja --chat-template-file`, set in a preset).
llama-server reads a template like any model's: it finds the tool-call markers, constrains the
arguments to the tool's JSON schema with a grammar once the model opens a call, and splits
`<think>` output into `reasoning_content`. The tools template carries one demonstration
exchange, because this tiny model only follows the call format from an example; what comes
back (a parsed call, objects as arguments, the tool's answer accepted) is llama-server's and
llamaman's real work. There is no vision projector for this model, so images are checked up to
llama-server's refusal.
"""
import shlex

import ollama
import pytest

from tests.e2e.test_compat_chat import api, link_models, make_manager

pytestmark = pytest.mark.timeout(300)
PORTS = 32600

TOOLS_TEMPLATE = """{{- bos_token -}}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{%- elif message.role == 'assistant' -%}
<start_of_turn>model
{% if message.tool_calls %}{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}{% else %}{{ message.content }}{% endif %}<end_of_turn>
{% elif message.role == 'tool' -%}
<start_of_turn>user
<tool_response>
{{ message.content }}
</tool_response><end_of_turn>
{% else -%}
<start_of_turn>user
{% if loop.first and tools %}You have these tools:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}To use a tool, answer only with <tool_call>
{"name": "tool name", "arguments": {"argument": "value"}}
</tool_call>

{% endif %}{{ message.content }}<end_of_turn>
{% if loop.first and tools %}<start_of_turn>model
<tool_call>
{"name": "{{ tools[0].function.name }}", "arguments": {"city": "Rome"}}
</tool_call><end_of_turn>
<start_of_turn>user
<tool_response>
sunny
</tool_response><end_of_turn>
<start_of_turn>model
It is sunny in Rome.<end_of_turn>
<start_of_turn>user
{{ message.content }}<end_of_turn>
{% endif %}{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<start_of_turn>model
{% endif -%}
"""

THINK_TEMPLATE = """{{- bos_token -}}
{%- set thinking = enable_thinking is defined and enable_thinking -%}
{%- for message in messages -%}
{%- if message.role == 'assistant' -%}
<start_of_turn>model
{% if message.reasoning_content %}<think>
{{ message.reasoning_content }}
</think>
{% endif %}{{ message.content }}<end_of_turn>
{% elif message.role == 'user' -%}
<start_of_turn>user
{{ message.content }}<end_of_turn>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<start_of_turn>model
{% if thinking %}<think>
{% endif -%}
{% endif -%}
"""

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = {"role": "user", "content": "What is the weather in Paris? Use the tool."}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="  # 1x1 PNG


def with_template(manager, models, name: str, template: str, extra: str = "") -> None:
    """Give model `name` a preset that runs it under `template`."""
    path = models / f"{name}.template.jinja"
    path.write_text(template)
    args = f"--jinja --chat-template-file {shlex.quote(str(path))} {extra}".strip()
    saved = manager.api.put(manager.url(f"/api/presets{models}/{name}.gguf"), json={"extra_args": args})
    assert saved.status_code in (200, 201), saved.text


@pytest.fixture
def setup(request, tmp_path, model_path):
    models = link_models(tmp_path / "models", model_path, ("tooly", "thinky", "plain"))
    manager = make_manager(request, tmp_path, models, ports=PORTS)
    with_template(manager, models, "tooly", TOOLS_TEMPLATE)
    with_template(manager, models, "thinky", THINK_TEMPLATE, "--reasoning-format deepseek")
    client = ollama.Client(host=api(manager), headers={"Authorization": f"Bearer {manager.key}"}, timeout=120)
    return manager, client


def test_tool_calls_round_trip_with_object_arguments(setup):
    _, client = setup
    options = {"num_predict": 48, "temperature": 0}
    answer = client.chat(model="tooly", messages=[ASK], tools=[WEATHER], options=options)
    calls = answer.message.tool_calls
    assert calls, f"no tool call parsed: {answer.message}"
    assert calls[0].function.name == "get_weather"
    arguments = calls[0].function.arguments
    assert dict(arguments).keys() == {"city"} and isinstance(arguments["city"], str), \
        "arguments arrive as a JSON object that follows the tool's schema"

    parts = list(client.chat(model="tooly", messages=[ASK], tools=[WEATHER], options=options, stream=True))
    streamed = [call for part in parts for call in (part.message.tool_calls or [])]
    assert [c.function.name for c in streamed] == [c.function.name for c in calls]
    assert [dict(c.function.arguments) for c in streamed] == [dict(c.function.arguments) for c in calls]
    assert parts[-1].done

    history = [ASK, {"role": "assistant", "content": "", "tool_calls": [calls[0]]},
               {"role": "tool", "content": "18 degrees and sunny", "tool_name": "get_weather"}]
    reply = client.chat(model="tooly", messages=history, tools=[WEATHER], options=options)
    assert reply.done and reply.message.role == "assistant"
    assert reply.message.content or reply.message.tool_calls, "the model answered after the tool's result"


def test_think_maps_to_reasoning_output(setup):
    _, client = setup
    question = [{"role": "user", "content": "Why is the sky blue?"}]
    options = {"num_predict": 16, "temperature": 0}
    thought = client.chat(model="thinky", messages=question, think=True, options=options)
    assert thought.message.thinking, "the template opened <think>: llama-server returns reasoning"
    assert not thought.message.content, "everything this model wrote stayed inside <think>"
    plain = client.chat(model="thinky", messages=question, think=False, options=options)
    assert plain.message.content and not plain.message.thinking

    parts = list(client.generate(model="thinky", prompt="Why is the sky blue?", think=True, options=options,
                                 stream=True))
    assert "".join(p.thinking or "" for p in parts), "thinking streams as `thinking` pieces"
    assert not "".join(p.response for p in parts) and parts[-1].done and parts[-1].eval_count > 0


def test_images_reach_llama_server_and_a_text_model_refuses_them_clearly(setup):
    _, client = setup
    with pytest.raises(ollama.ResponseError) as chat_err:
        client.chat(model="plain", messages=[{"role": "user", "content": "What is this?", "images": [PIXEL]}])
    with pytest.raises(ollama.ResponseError) as generate_err:
        list(client.generate(model="plain", prompt="What is this?", images=[PIXEL], stream=True))
    for err in (chat_err, generate_err):
        assert err.value.status_code == 400
        assert "model 'plain' does not accept image input" in err.value.error
        assert "image input is not supported" in err.value.error, "llama-server itself saw the image part"
