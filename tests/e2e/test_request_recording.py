"""Request recording end to end: two chat turns of one conversation through the real `ollama`
client land in one recorded conversation whose per-turn metrics match what Ollama reported."""
import time

import ollama
import pytest

from tests.e2e.instancekit import runtime_env, start_manager
from tests.e2e.test_compat_chat import link_models

pytestmark = pytest.mark.timeout(300)
SYSTEM = {"role": "system", "content": "You answer in one short sentence."}


@pytest.fixture
def manager(request, tmp_path, model_path):
    folder = link_models(tmp_path / "models", model_path, ("alpha",))
    manager = start_manager(tmp_path / "app", runtime_env("process", request, folder, ports=32200))

    def stop_all():
        for instance in manager.api.get(manager.url("/api/instances")).json():
            manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
        manager.app.kill()
    request.addfinalizer(stop_all)
    saved = manager.api.post(manager.url("/api/settings"), json={"request_recording_mode": "per_conversation"})
    assert saved.status_code == 200, saved.text
    return manager


def conversation_turns(manager, count: int, timeout: float = 10) -> list[dict]:
    """The one recorded conversation once it has `count` turns (records are written async)."""
    deadline = time.monotonic() + timeout
    listed: list = []
    while time.monotonic() < deadline:
        listed = manager.api.get(manager.url("/api/request-log/conversations")).json()
        if listed and listed[0]["turn_count"] >= count:
            break
        time.sleep(0.1)
    assert len(listed) == 1 and listed[0]["turn_count"] == count, listed
    detail = manager.api.get(manager.url(f"/api/request-log/conversations/{listed[0]['conversation_id']}"))
    return detail.json()["turns"]


def test_two_turns_land_in_one_conversation_with_ollamas_numbers(manager):
    client = ollama.Client(host=f"http://127.0.0.1:{manager.app.proxy_port}",
                           headers={"Authorization": f"Bearer {manager.key}"})
    messages = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    options = {"num_predict": 16, "temperature": 0}
    parts = list(client.chat(model="alpha", messages=messages, stream=True, options=options))
    first = parts[-1]
    reply = "".join(p.message.content for p in parts)
    messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And another?"}]
    second = client.chat(model="alpha", messages=messages, options=options)

    turns = conversation_turns(manager, 2)
    for turn, final in zip(turns, (first, second), strict=True):
        assert turn["completion_tokens"] == final.eval_count > 0
        assert turn["prompt_tokens"] == final.prompt_eval_count
        expected_tps = final.eval_count / (final.eval_duration / 1e9)
        assert turn["tokens_per_sec"] == pytest.approx(expected_tps, rel=1e-3)
        assert 0 < turn["ttft_ms"] < turn["duration_ms"]
        assert turn["status_code"] == 200 and turn["model"] == "alpha" and turn["error"] is None
    assert [t["streamed"] for t in turns] == [True, False]
    assert turns[0]["response_body"] == reply and turns[1]["response_body"] == second.message.content

    stats = manager.api.get(manager.url(f"/api/request-log/stats?inst_id={turns[0]['inst_id']}")).json()
    assert stats["turn_count"] == 2 and stats["completion_tokens"] == first.eval_count + second.eval_count
    metrics = manager.api.get(manager.url("/metrics")).text
    assert 'llamaman_requests_total{endpoint="/api/chat",model="alpha",status="200"} 2.0' in metrics
    assert "llamaman_instance_load_seconds{" in metrics
