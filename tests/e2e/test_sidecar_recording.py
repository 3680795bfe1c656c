"""Recording of requests through an instance's own port (the sidecar), against the real
llama-server: the stored numbers are the ones llama-server reported in the same response."""
import json
import time

import pytest
import requests

from tests.e2e.instancekit import chat, runtime_env, start_manager

pytestmark = pytest.mark.timeout(300)
CHAT_PATH = "/v1/chat/completions"


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, models_dir):
    manager = start_manager(tmp_path_factory.mktemp("sidecar-rec"),
                            runtime_env("process", request, models_dir, ports=31600))
    yield manager
    manager.app.kill()


def set_mode(manager, mode: str) -> None:
    saved = manager.api.post(manager.url("/api/settings"), json={"request_recording_mode": mode})
    assert saved.status_code == 200, saved.text


def recorded(manager, count: int, timeout: float = 10) -> list[dict]:
    """Every recorded turn (per_request: one per conversation) once there are `count`."""
    deadline = time.monotonic() + timeout
    listed: list = []
    while time.monotonic() < deadline:
        listed = manager.api.get(manager.url("/api/request-log/conversations")).json()
        if len(listed) >= count:
            break
        time.sleep(0.1)
    assert len(listed) == count, listed
    turns = []
    for conversation in listed:
        detail = manager.api.get(manager.url(f"/api/request-log/conversations/{conversation['conversation_id']}"))
        turns += detail.json()["turns"]
    return turns


def requests_counted(manager) -> float:
    """llamaman_requests_total summed over the chat endpoint (Prometheus)."""
    text = manager.api.get(manager.url("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("llamaman_requests_total{") and f'endpoint="{CHAT_PATH}"' in line)


def streamed_chat(port: int, key: str) -> tuple[str, dict]:
    """The streamed reply's text and the timings of its last event."""
    response = chat(port, key, stream=True, max_tokens=12)
    assert response.status_code == 200
    text, timings = "", None
    for line in response.iter_lines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            event = json.loads(line[6:])
            timings = event.get("timings") or timings
            for choice in event.get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
    assert timings is not None, "llama-server sends timings with its last event"
    return text, timings


def assert_matches(turn: dict, timings: dict, text: str, instance: dict) -> None:
    assert turn["status_code"] == 200 and turn["error"] is None
    assert turn["endpoint"] == CHAT_PATH and turn["inst_id"] == instance["id"]
    assert turn["model"] == instance["model_name"]
    assert turn["completion_tokens"] == timings["predicted_n"] > 0
    assert turn["prompt_tokens"] == timings["prompt_n"]
    assert turn["tokens_per_sec"] == pytest.approx(timings["predicted_n"] * 1000 / timings["predicted_ms"], rel=1e-6)
    assert 0 < turn["ttft_ms"] < turn["duration_ms"]
    assert turn["response_body"] == text
    assert json.loads(turn["request_body"])["messages"][0]["content"] == "Say hello."


def test_nothing_is_recorded_while_recording_is_off(manager, launched):
    set_mode(manager, "off")
    instance = launched()
    before = requests_counted(manager)
    assert chat(instance["port"], manager.key, stream=False, max_tokens=4).status_code == 200
    streamed_chat(instance["port"], manager.key)
    assert manager.api.get(manager.url("/api/request-log/conversations")).json() == []
    assert requests_counted(manager) == before


def test_streamed_and_whole_chats_are_recorded_with_llama_servers_numbers(manager, launched):
    set_mode(manager, "per_request")
    instance = launched()
    text, stream_timings = streamed_chat(instance["port"], manager.key)
    whole = chat(instance["port"], manager.key, stream=False, max_tokens=12)
    assert whole.status_code == 200
    turns = {turn["streamed"]: turn for turn in recorded(manager, 2)}
    assert_matches(turns[True], stream_timings, text, instance)
    assert_matches(turns[False], whole.json()["timings"], whole.json()["choices"][0]["message"]["content"], instance)
    assert turns[True]["queue_wait_ms"] >= 0
    set_mode(manager, "off")


def test_refused_requests_are_recorded_with_their_status(manager, launched):
    set_mode(manager, "per_request")
    known = {c["conversation_id"] for c in manager.api.get(manager.url("/api/request-log/conversations")).json()}
    instance = launched()
    refused = chat(instance["port"], manager.key, stream=False, model="no-such-model")
    assert refused.status_code == 404
    unauthorised = requests.post(f"http://127.0.0.1:{instance['port']}{CHAT_PATH}", json={"messages": []})
    assert unauthorised.status_code == 401
    turns = [t for t in recorded(manager, len(known) + 1) if t["conversation_id"] not in known]
    assert len(turns) == 1, "the 404 is recorded, the unauthenticated request is not"
    assert turns[0]["status_code"] == 404 and turns[0]["model"] == "no-such-model"
    assert turns[0]["error"] == refused.json()["error"]["message"] and turns[0]["inst_id"] == instance["id"]
    set_mode(manager, "off")
