"""Compat failures end to end: a llama-server killed mid-stream ends each kind of stream with
an error (never a hang or a silent cut), and requests refused before reaching a model are
recorded with their status, error, endpoint and the model name as sent."""
import json
import os
import signal

import ollama
import openai
import pytest
import requests

from tests.e2e.test_compat_chat import (
    api,
    link_models,
    make_manager,
    record_per_request,
    recorded_turns,
    running,
)

pytestmark = pytest.mark.timeout(300)
PORTS = 32400
LONG = [{"role": "user", "content": "Tell me a very long story about a lighthouse keeper."}]
CLIENT_TIMEOUT_S = 120  # a hang guard for the clients: a stream that never ends fails the test


def error_message(answer: requests.Response) -> str:
    """The message of an error in our shape or in OpenAI's (`/v1/` routes)."""
    error = answer.json()["error"]
    return error["message"] if isinstance(error, dict) else error


def kill_server_of(manager, model: str) -> None:
    """SIGKILL the llama-server process serving `model` (process runtime: the handle is its pid)."""
    [instance] = [i for i in running(manager) if i["model_name"] == model]
    os.kill(int(instance["runtime"]["handle"]), signal.SIGKILL)


def test_a_llama_server_killed_mid_stream_ends_every_stream_with_an_error(request, tmp_path, model_path):
    models = link_models(tmp_path / "models", model_path)
    manager = make_manager(request, tmp_path, models, ports=PORTS)
    record_per_request(manager)
    client = ollama.Client(host=api(manager), headers={"Authorization": f"Bearer {manager.key}"},
                           timeout=CLIENT_TIMEOUT_S)

    chat = client.chat(model="alpha", messages=LONG, stream=True, options={"num_predict": 4000})
    assert next(chat).message.content, "content was streaming"
    kill_server_of(manager, "alpha")
    with pytest.raises(ollama.ResponseError) as err:
        for part in chat:
            assert not part.done, "a killed stream must not end as if it were complete"
    assert "llama-server stopped while streaming" in err.value.error

    generate = requests.post(api(manager) + "/api/generate", stream=True, timeout=CLIENT_TIMEOUT_S,
                             headers={"Authorization": f"Bearer {manager.key}"},
                             json={"model": "beta", "prompt": LONG[0]["content"], "options": {"num_predict": 4000}})
    lines = generate.iter_lines()
    assert json.loads(next(lines))["response"]
    kill_server_of(manager, "beta")
    rest = [json.loads(line) for line in lines]  # strict NDJSON to the end
    assert all(line.get("done") is False for line in rest[:-1])
    assert set(rest[-1]) == {"error"} and "llama-server stopped while streaming" in rest[-1]["error"]

    openai_client = openai.OpenAI(base_url=api(manager) + "/v1", api_key=manager.key, timeout=CLIENT_TIMEOUT_S)
    stream = openai_client.chat.completions.create(model="gamma", messages=LONG, max_tokens=4000, stream=True)
    first = [chunk for chunk, _ in zip(stream, range(3), strict=False)]
    assert any(c.choices and c.choices[0].delta.content for c in first), "content was streaming"
    kill_server_of(manager, "gamma")
    with pytest.raises(openai.APIError) as openai_err:
        for _ in stream:
            pass
    assert "llama-server stopped while streaming" in openai_err.value.message

    turns = recorded_turns(manager, 3)
    assert [(t["endpoint"], t["model"], t["status_code"]) for t in turns] == [
        ("/api/chat", "alpha", 502), ("/api/generate", "beta", 502), ("/v1/chat/completions", "gamma", 502)]
    assert all("llama-server stopped while streaming" in t["error"] and t["response_body"] for t in turns)


def test_requests_refused_before_a_model_are_recorded(request, tmp_path, model_path):
    models = link_models(tmp_path / "models", model_path, ("alpha", "beta"))
    manager = make_manager(request, tmp_path, models, ports=PORTS, LLAMAMAN_MAX_MODELS="1")
    record_per_request(manager)
    manager.wait_status(manager.launch(models / "alpha.gguf")["id"], "healthy")  # admin-launched: holds the cap
    headers = {"Authorization": f"Bearer {manager.key}"}
    chat = [{"role": "user", "content": "Hi"}]
    refusals = [
        ("/api/chat", {"model": "NOPE:latest", "messages": chat}, 404),
        ("/v1/chat/completions", {"model": "nowhere", "messages": chat}, 404),
        ("/api/chat", {"model": "Alpha", "messages": chat, "options": {"temperature": "hot"}}, 400),
        ("/api/generate", {"model": "alpha", "prompt": "x", "stream": "yes"}, 400),
        ("/api/chat", {"model": "beta", "messages": chat}, 503),
        ("/v1/chat/completions", {"model": "beta:latest", "messages": chat}, 503),
        ("/api/embed", {"model": "ghost", "input": "x"}, 404),
        ("/v1/embeddings", {"model": "alpha", "input": 5}, 400),
    ]
    answers = [requests.post(api(manager) + path, json=body, headers=headers, timeout=60)
               for path, body, _ in refusals]
    assert [a.status_code for a in answers] == [status for _, _, status in refusals], [a.text for a in answers]
    turns = recorded_turns(manager, len(refusals))
    assert [(t["endpoint"], t["model"], t["status_code"]) for t in turns] == [
        (path, body["model"], status) for path, body, status in refusals]
    for turn, answer in zip(turns, answers, strict=True):
        assert turn["error"] == error_message(answer) and turn["inst_id"] is None
    assert answers[4].json()["error"] == ("model limit reached (LLAMAMAN_MAX_MODELS=1); admin-launched models "
                                          "cannot be evicted via the API")
    assert answers[5].json()["error"]["message"] == ("model limit reached (LLAMAMAN_MAX_MODELS=1); the OpenAI API does not "
                                          "evict running models")
    assert [i["model_name"] for i in running(manager)] == ["alpha"], "no refusal launched anything"
    for path in ("/api/chat", "/api/generate", "/v1/chat/completions"):
        malformed = requests.post(api(manager) + path, data=b"{not json", headers=headers, timeout=60)
        assert malformed.status_code == 400 and error_message(malformed)
