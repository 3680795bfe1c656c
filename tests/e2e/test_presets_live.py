"""Saving a preset updates running instances in place, against a real llama-server."""
import threading
import time

import pytest
import requests

from tests.e2e.instancekit import chat, runtime_env, start_manager

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, models_dir):
    env = runtime_env("process", request, models_dir, ports=28000)
    manager = start_manager(tmp_path_factory.mktemp("presets"), env)
    yield manager
    manager.app.kill()


def save_preset(manager, model_path, **fields) -> dict:
    response = manager.api.put(manager.url(f"/api/presets{model_path}"), json=fields)
    assert response.status_code == 200, response.text
    return response.json()


def stream(port, key, results, index):
    """One streaming chat that runs for a while; records its status and whether it completed."""
    try:
        response = chat(port, key, max_tokens=64, ignore_eos=True)
        chunks = sum(1 for line in response.iter_lines() if line.startswith(b"data:"))
        results[index] = (response.status_code, chunks)
    except requests.RequestException as err:
        results[index] = (None, str(err))


def wait_for(check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_lowering_max_concurrent_resizes_the_gate_in_place(manager, launched, model_path):
    instance = launched(parallel=4, ctx_size=2048, max_concurrent=4, max_queue_depth=20)
    handle = instance["runtime"]["handle"]
    results, threads = {}, []
    for index in range(6):
        thread = threading.Thread(target=stream, args=(instance["port"], manager.key, results, index))
        thread.start()
        threads.append(thread)
        time.sleep(0.03)
    wait_for(lambda: manager.instance(instance["id"])["active_requests"] >= 2)
    saved = save_preset(manager, model_path, max_concurrent=1)
    assert saved["applied"] == [{"id": instance["id"], "fields": ["max_concurrent"]}]
    assert saved["needs_relaunch"] == []
    assert saved["preset"] == {"model_path": str(model_path), "max_concurrent": 1}
    wait_for(lambda: manager.instance(instance["id"])["active_requests"] <= 1, timeout=120)
    peak = 0
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, manager.instance(instance["id"])["active_requests"])
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    after = manager.instance(instance["id"])
    assert peak <= 1, "more requests ran than the new limit"
    assert [results[i][0] for i in range(6)] == [200] * 6, f"a request was dropped: {results}"
    assert all(results[i][1] > 1 for i in range(6)), f"a stream was cut short: {results}"
    assert after["max_concurrent"] == 1 and after["status"] == "healthy"
    assert after["runtime"]["handle"] == handle, "the instance must not be relaunched"


def test_relaunch_settings_are_reported_and_not_applied(manager, launched, model_path):
    instance = launched(max_queue_depth=20)  # ctx_size 512, threads 2 (instancekit SMALL)
    saved = save_preset(manager, model_path, ctx_size=1024, threads=2, max_queue_depth=30)
    assert saved["needs_relaunch"] == [{"id": instance["id"], "fields": ["ctx_size"]}]
    assert saved["applied"] == [{"id": instance["id"], "fields": ["max_queue_depth"]}]
    after = manager.instance(instance["id"])
    assert after["ctx_size"] == 512 and after["max_queue_depth"] == 30 and after["status"] == "healthy"
    assert after["runtime"]["handle"] == instance["runtime"]["handle"]
    headers = {"Authorization": f"Bearer {manager.key}"}
    props = requests.get(f"http://127.0.0.1:{instance['port']}/props", headers=headers, timeout=30).json()
    assert props["default_generation_settings"]["n_ctx"] == 512
    assert chat(instance["port"], manager.key, stream=False, max_tokens=2).status_code == 200


def test_sampling_overrides_saved_in_a_preset_reach_llama_server(manager, launched, model_path):
    instance = launched()
    url = f"http://127.0.0.1:{instance['port']}/completion"
    headers = {"Authorization": f"Bearer {manager.key}"}
    body = {"prompt": "Hello", "n_predict": 2, "temperature": 1.7, "top_k": 90, "top_p": 0.5}
    before = requests.post(url, json=body, headers=headers, timeout=60).json()["generation_settings"]
    assert before["temperature"] == pytest.approx(1.7) and before["top_k"] == 90
    saved = save_preset(manager, model_path, proxy_sampling_override_enabled=True, proxy_sampling_temperature=0.25,
                        proxy_sampling_top_k=7, proxy_sampling_top_p=0.8, proxy_sampling_repeat_penalty=1.15,
                        proxy_sampling_presence_penalty=0.4)
    assert saved["applied"][0]["id"] == instance["id"] and saved["needs_relaunch"] == []
    after = requests.post(url, json=body, headers=headers, timeout=60).json()["generation_settings"]
    assert after["temperature"] == pytest.approx(0.25) and after["top_k"] == 7
    assert after["top_p"] == pytest.approx(0.8) and after["repeat_penalty"] == pytest.approx(1.15)
    assert after["presence_penalty"] == pytest.approx(0.4)
    assert manager.instance(instance["id"])["runtime"]["handle"] == instance["runtime"]["handle"]
