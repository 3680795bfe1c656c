"""Chat and generate through the real `ollama` and `openai` clients, with on-demand loading and
the model cap, against the real gemma model."""
import json
import os
import threading
import time
from pathlib import Path

import ollama
import openai
import pytest
import requests

from tests.e2e.instancekit import runtime_env, start_manager

pytestmark = pytest.mark.timeout(300)
PORTS = 32000


def link_models(folder: Path, model_path: Path, names=("alpha", "beta", "gamma")) -> Path:
    """Model names backed by the one real GGUF (hard links: no copies)."""
    folder.mkdir(exist_ok=True)
    for name in names:
        os.link(model_path, folder / f"{name}.gguf")
    return folder


@pytest.fixture
def models(tmp_path, model_path):
    return link_models(tmp_path / "models", model_path)


def make_manager(request, tmp_path, models, ports=PORTS, **env):
    base = runtime_env("process", request, models, ports=ports)
    manager = start_manager(tmp_path / "app", {**base, **env})
    request.addfinalizer(lambda: stop_all(manager))
    return manager


def record_per_request(manager) -> None:
    saved = manager.api.post(manager.url("/api/settings"), json={"request_recording_mode": "per_request"})
    assert saved.status_code == 200, saved.text


def recorded_turns(manager, count: int, timeout: float = 15) -> list[dict]:
    """Every recorded turn, oldest first, once there are `count` (records are written async)."""
    deadline = time.monotonic() + timeout
    turns: list[dict] = []
    while time.monotonic() < deadline:
        listed = manager.api.get(manager.url("/api/request-log/conversations?limit=500")).json()
        turns = [turn for conversation in listed for turn in manager.api.get(manager.url(
            f"/api/request-log/conversations/{conversation['conversation_id']}")).json()["turns"]]
        if len(turns) >= count:
            break
        time.sleep(0.1)
    assert len(turns) == count, turns
    return sorted(turns, key=lambda turn: turn["ts"])


def stop_all(manager):
    for instance in manager.api.get(manager.url("/api/instances")).json():
        manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
    manager.app.kill()


def api(manager) -> str:
    return f"http://127.0.0.1:{manager.app.proxy_port}"


def ollama_client(manager):
    return ollama.Client(host=api(manager), headers={"Authorization": f"Bearer {manager.key}"})


def running(manager):
    return [i for i in manager.api.get(manager.url("/api/instances")).json() if i["status"] in ("starting", "healthy")]


def test_ollama_chat_loads_on_demand_and_reports_real_metrics(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    client = ollama_client(manager)
    assert running(manager) == []
    parts = list(client.chat(model="alpha", messages=[{"role": "user", "content": "Say hi."}],
                             stream=True, options={"num_predict": 12, "temperature": 0}))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content for p in parts)
    final = parts[-1]
    assert final.done_reason in ("stop", "length") and final.eval_count > 0 and final.prompt_eval_count > 0
    assert final.eval_duration > 0 and final.total_duration >= final.eval_duration + final.load_duration
    assert final.load_duration > 0, "the first request waited for the load"
    [instance] = running(manager)
    assert instance["launched_by"] == "ollama" and instance["model_name"] == "alpha"
    whole = client.chat(model="ALPHA:latest", messages=[{"role": "user", "content": "Say hi."}],
                        options={"num_predict": 8})
    assert whole.done and whole.message.role == "assistant" and len(running(manager)) == 1


def test_ndjson_is_strict_and_eval_count_comes_from_timings(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    response = requests.post(api(manager) + "/api/generate", stream=True,
                             headers={"Authorization": f"Bearer {manager.key}"},
                             json={"model": "beta", "prompt": "Count to five.", "options": {"num_predict": 10}})
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [line for line in response.iter_lines()]
    objects = [json.loads(line) for line in lines]  # every line is one JSON object
    final = objects[-1]
    assert final["done"] is True and all(o["done"] is False for o in objects[:-1])
    assert all(isinstance(final[k], int) for k in ("total_duration", "load_duration", "prompt_eval_count",
                                                   "prompt_eval_duration", "eval_count", "eval_duration"))
    assert final["eval_count"] == 10, "num_predict 10 → llama-server predicted 10"


def test_load_only_unknown_model_and_bad_input(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    client = ollama_client(manager)
    loaded = client.chat(model="gamma", messages=[])
    assert loaded.done and loaded.done_reason == "load"
    assert [i["model_name"] for i in running(manager)] == ["gamma"]
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 404
    headers = {"Authorization": f"Bearer {manager.key}"}
    for body in ({"model": "gamma", "messages": "hi"}, {"model": "gamma", "messages": [{"role": "x"}]},
                 {"model": "gamma", "prompt": 5}, {"messages": []},
                 {"model": "gamma", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": "hot"}}):
        path = "/api/generate" if "prompt" in body else "/api/chat"
        assert requests.post(api(manager) + path, json=body, headers=headers).status_code == 400
    assert len(running(manager)) == 1, "bad requests launch nothing"


def test_openai_client_streams_and_names_the_model_as_asked(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    client = openai.OpenAI(base_url=api(manager) + "/v1", api_key=manager.key)
    stream = client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=8, stream=True)
    chunks = list(stream)
    assert chunks and all(c.model == "alpha" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    assert whole.model == "alpha" and whole.usage.completion_tokens > 0
    text = client.completions.create(model="alpha", prompt="Once upon", max_tokens=4)
    assert text.model == "alpha" and text.choices[0].text is not None
    with_usage = list(client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "Hi"}],
                                                     max_tokens=4, stream=True, stream_options={"include_usage": True}))
    assert with_usage[-1].usage.completion_tokens > 0
    headers = {"Authorization": f"Bearer {manager.key}"}
    native = requests.post(api(manager) + "/completion", headers=headers,
                           json={"model": "alpha", "prompt": "Once upon", "n_predict": 4}).json()
    assert native["model"] == "alpha" and isinstance(native["content"], str) and native["stop"] is True
    streamed = requests.post(api(manager) + "/completion", headers=headers, stream=True,
                             json={"model": "alpha", "prompt": "Once upon", "n_predict": 4, "stream": True})
    events = [json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith(b"data: ")]
    assert events[-1]["stop"] is True and "error" not in events[-1] and all(e["model"] == "alpha" for e in events)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "Hi"}])


def test_cold_burst_causes_one_launch(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    results = []

    def ask():
        response = requests.post(api(manager) + "/api/chat", headers={"Authorization": f"Bearer {manager.key}"},
                                 json={"model": "beta", "stream": False, "options": {"num_predict": 4},
                                       "messages": [{"role": "user", "content": "Hi"}]})
        results.append(response.status_code)
    threads = [threading.Thread(target=ask) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 10
    assert len(manager.api.get(manager.url("/api/instances")).json()) == 1, "exactly one launch"


def test_the_model_cap_is_never_exceeded(request, tmp_path, models):
    """30 API requests across 3 models racing admin launches, with LLAMAMAN_MAX_MODELS=1."""
    manager = make_manager(request, tmp_path, models, LLAMAMAN_MAX_MODELS="1",
                           LLAMAMAN_IDLE_TIMEOUT="0")
    manager.api.post(manager.url("/api/settings"), json={"allow_ollama_api_override_admin": True}).raise_for_status()
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], len(running(manager)))
            time.sleep(0.01)
    sampler = threading.Thread(target=sample)
    sampler.start()
    statuses, launches = [], []

    def ask(name):
        response = requests.post(api(manager) + "/api/chat", headers={"Authorization": f"Bearer {manager.key}"},
                                 json={"model": name, "stream": False, "options": {"num_predict": 2},
                                       "messages": [{"role": "user", "content": "Hi"}]})
        statuses.append(response.status_code)

    def admin_launch(name):
        launches.append(manager.api.post(manager.url("/api/instances"), json={
            "model_path": str(models / f"{name}.gguf"), "confirm_evict": True}).status_code)
    threads = [threading.Thread(target=ask, args=(name,)) for name in ("alpha", "beta", "gamma") * 10]
    threads += [threading.Thread(target=admin_launch, args=(name,)) for name in ("alpha", "beta", "gamma")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    sampler.join()
    assert peak[0] == 1, f"{peak[0]} chat models were loaded at once with LLAMAMAN_MAX_MODELS=1"
    assert statuses.count(200) == 30, statuses
    assert launches == [201] * 3
    client = openai.OpenAI(base_url=api(manager) + "/v1", api_key=manager.key)
    loaded = running(manager)[0]["model_name"]
    other = next(n for n in ("alpha", "beta", "gamma") if n != loaded)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model=other, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert err.value.status_code == 503
    assert err.value.response.json()["error"]["message"] == (
        "model limit reached (LLAMAMAN_MAX_MODELS=1); the OpenAI API does not evict running models")
    assert str(err.value.code) == "503" and err.value.type == "server_error"
    assert str(err.value).endswith("the OpenAI API does not evict running models")  # the client reads our message


def test_show_reports_the_effective_context_and_capabilities(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    client = ollama_client(manager)
    shown = client.show("alpha")
    assert shown.details.family == "gemma3" and "completion" in shown.capabilities
    assert shown.modelinfo["gemma3.context_length"] == 32768, "the GGUF's trained length by default"
    manager.api.put(manager.url(f"/api/presets{models}/alpha.gguf"), json={"ctx_size": 1024}).raise_for_status()
    assert client.show("alpha").modelinfo["gemma3.context_length"] == 1024, "a preset wins over the GGUF"
    manager.wait_status(manager.launch(models / "alpha.gguf", ctx_size=768)["id"], "healthy")
    assert client.show("alpha:latest").modelinfo["gemma3.context_length"] == 768, "a running instance wins"
    with pytest.raises(ollama.ResponseError) as err:
        client.show("nope")
    assert err.value.status_code == 404


def test_embeddings_use_an_embedding_instance_outside_the_cap(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models, LLAMAMAN_MAX_MODELS="1")
    record_per_request(manager)
    # gemma is generative: it needs a pooling type to give one vector per input.
    manager.api.put(manager.url(f"/api/presets{models}/beta.gguf"),
                    json={"extra_args": "--pooling mean"}).raise_for_status()
    client = ollama_client(manager)
    client.chat(model="alpha", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2})
    vectors = client.embed(model="beta", input=["first text", "second text"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 100
    legacy = client.embeddings(model="beta", prompt="first text").embedding
    assert len(legacy) == len(vectors[0])
    embedded = openai.OpenAI(base_url=api(manager) + "/v1", api_key=manager.key).embeddings.create(
        model="beta", input="first text")
    assert embedded.model == "beta" and len(embedded.data[0].embedding) == len(vectors[0])
    instances = manager.api.get(manager.url("/api/instances")).json()
    by_name = {i["model_name"]: i for i in instances if i["status"] == "healthy"}
    assert by_name["beta"]["embedding"] is True and by_name["alpha"]["embedding"] is False
    assert len(by_name) == 2, "the embedding model is not counted against LLAMAMAN_MAX_MODELS=1"
    embedded_turns = recorded_turns(manager, 4)[1:]
    assert [(t["endpoint"], t["model"], t["status_code"], t["inst_id"]) for t in embedded_turns] == [
        (endpoint, "beta", 200, by_name["beta"]["id"]) for endpoint in ("/api/embed", "/api/embeddings", "/v1/embeddings")]
    assert all(t["prompt_tokens"] > 0 for t in embedded_turns)


def test_keep_alive_sets_the_idle_timeout_and_zero_unloads(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    client = ollama_client(manager)
    client.generate(model="gamma", prompt="Hi", keep_alive="10m", options={"num_predict": 2})
    [instance] = running(manager)
    assert instance["idle_timeout_min"] == 10
    unloaded = client.generate(model="gamma", prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert manager.instance(instance["id"])["status"] == "stopped"


def test_delete_follows_the_library_rules(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    admin_key = manager.api.post(manager.url("/api/api-keys"), json={"name": "a", "scope": "admin"}).json()["key"]
    admin = {"Authorization": f"Bearer {admin_key}"}
    inference = {"Authorization": f"Bearer {manager.key}"}
    assert requests.delete(api(manager) + "/api/delete", json={"model": "gamma"}, headers=inference).status_code == 403
    manager.wait_status(manager.launch(models / "beta.gguf")["id"], "healthy")
    assert requests.delete(api(manager) + "/api/delete", json={"model": "beta"}, headers=admin).status_code == 409
    assert requests.delete(api(manager) + "/api/delete", json={"model": "gamma"}, headers=admin).status_code == 200
    assert not (models / "gamma.gguf").exists()


def test_admin_launch_over_the_cap_needs_confirming_and_api_rights(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models, LLAMAMAN_MAX_MODELS="1")
    first = manager.wait_status(manager.launch(models / "alpha.gguf")["id"], "healthy")
    refused = manager.api.post(manager.url("/api/instances"), json={"model_path": str(models / "beta.gguf")})
    assert refused.status_code == 409 and refused.json()["confirm_required"] is True
    response = ollama_client(manager)
    with pytest.raises(ollama.ResponseError) as err:
        response.chat(model="gamma", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 503
    assert "admin-launched models cannot be evicted via the API" in str(err.value)
    confirmed = manager.api.post(manager.url("/api/instances"),
                                 json={"model_path": str(models / "beta.gguf"), "confirm_evict": True})
    assert confirmed.status_code == 201
    assert manager.instance(first["id"])["status"] == "stopped"
    manager.api.post(manager.url("/api/settings"), json={"allow_ollama_api_override_admin": True}).raise_for_status()
    manager.wait_status(confirmed.json()["id"], "healthy")
    answer = response.chat(model="gamma", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 2})
    assert answer.done and [i["model_name"] for i in running(manager)] == ["gamma"]


def test_structured_output_and_a_prompt_over_the_context(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    manager.api.put(manager.url(f"/api/presets{models}/alpha.gguf"), json={"ctx_size": 256}).raise_for_status()
    client = ollama_client(manager)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    answer = client.chat(model="alpha", format=schema, options={"num_predict": 64, "temperature": 0},
                         messages=[{"role": "user", "content": "Give me a JSON object with a=1."}])
    assert isinstance(json.loads(answer.message.content)["a"], int)
    too_long = [{"role": "user", "content": "word " * 2000}]
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="alpha", messages=too_long, stream=False)
    assert err.value.status_code == 400 and "context" in err.value.error
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.chat(model="alpha", messages=too_long, stream=True))
    assert streamed.value.status_code == 400 and streamed.value.error == err.value.error
    openai_client = openai.OpenAI(base_url=api(manager) + "/v1", api_key=manager.key)
    with pytest.raises(openai.BadRequestError) as openai_err:
        list(openai_client.chat.completions.create(model="alpha", messages=too_long, stream=True))
    assert "context" in str(openai_err.value)


def test_client_disconnect_mid_stream_stops_generation(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models)
    response = requests.post(api(manager) + "/api/chat", stream=True, headers={"Authorization": f"Bearer {manager.key}"},
                             json={"model": "beta", "messages": [{"role": "user", "content": "Tell a long story."}],
                                   "options": {"num_predict": 4000}})
    lines = response.iter_lines()
    assert json.loads(next(lines))["done"] is False
    [instance] = running(manager)
    response.close()
    monitor = lambda: manager.api.post(manager.url("/backend/monitor"), json={"model": instance["id"]}).json()["state"]
    deadline = time.monotonic() + 15
    while monitor() != 2:
        assert time.monotonic() < deadline, "the slot stayed busy after the client left"
        time.sleep(0.05)


def test_a_wake_on_an_instance_port_respects_the_cap(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models, LLAMAMAN_MAX_MODELS="1")
    sleeper = manager.wait_status(manager.launch(models / "alpha.gguf", idle_timeout_min=0.02)["id"], "healthy")
    manager.wait_status(sleeper["id"], "sleeping", timeout=30)
    other = manager.wait_status(manager.launch(models / "beta.gguf")["id"], "healthy")
    response = requests.post(f"http://127.0.0.1:{sleeper['port']}/v1/chat/completions",
                             headers={"Authorization": f"Bearer {manager.key}"},
                             json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert response.status_code == 200
    assert manager.instance(other["id"])["status"] == "stopped", "the wake evicted the other model"
    assert [i["id"] for i in running(manager)] == [sleeper["id"]]


def test_an_import_over_the_cap_needs_confirming_like_a_launch(request, tmp_path, models):
    manager = make_manager(request, tmp_path, models, LLAMAMAN_MAX_MODELS="1")
    first = manager.wait_status(manager.launch(models / "alpha.gguf")["id"], "healthy")
    exported = manager.api.get(manager.url(f"/api/instances/{first['id']}/export")).json()
    body = {**exported, "model_path": str(models / "beta.gguf"), "name": "imported"}
    refused = manager.api.post(manager.url("/api/instances/import"), json=body)
    assert refused.status_code == 409 and refused.json()["confirm_required"] is True
    assert [i["model_name"] for i in running(manager)] == ["alpha"], "a refused import changes nothing"
    confirmed = manager.api.post(manager.url("/api/instances/import"), json={**body, "confirm_evict": True})
    assert confirmed.status_code == 201, confirmed.text
    assert manager.instance(first["id"])["status"] == "stopped"
    assert manager.wait_status(confirmed.json()["id"], "healthy")["model_name"] == "beta"
