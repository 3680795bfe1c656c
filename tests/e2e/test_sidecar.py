"""The sidecar on instance ports, against a real llama-server with the real model."""
import json
import socket
import threading
import time

import pytest
import requests

from tests.e2e.instancekit import (
    chat,
    remove_product_containers,
    runtime_env,
    start_manager,
)
from tests.helpers import parse_chat_stream

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, models_dir):
    env = runtime_env("process", request, models_dir, ports=25000)
    manager = start_manager(tmp_path_factory.mktemp("sidecar"), env)
    yield manager
    manager.app.kill()


def stream_chat(port, key, results, index, max_tokens=48, **extra):
    """Run one streaming chat, recording status, headers and chunk arrival times."""
    started = time.monotonic()
    try:
        response = chat(port, key, max_tokens=max_tokens, ignore_eos=True, **extra)
        record = {"status": response.status_code, "headers": response.headers, "times": [], "sent": started}
        if response.status_code == 200:
            for line in response.iter_lines():
                if line.startswith(b"data:"):
                    record["times"].append(time.monotonic())
        else:
            error = response.json().get("error")  # OpenAI's shape on /v1/ routes
            record["error"] = error.get("message") if isinstance(error, dict) else error
    except requests.RequestException as err:
        record = {"status": None, "error": str(err)}
    results[index] = record


def run_streams(port, key, count, max_tokens=48, spacing=0.0):
    """Start `count` streaming chats (spaced to fix their arrival order); return their records."""
    results, threads = {}, []
    for index in range(count):
        thread = threading.Thread(target=stream_chat, args=(port, key, results, index, max_tokens))
        thread.start()
        threads.append(thread)
        time.sleep(spacing)
    for thread in threads:
        thread.join()
    return results


def test_streaming_arrives_chunk_by_chunk(manager, launched):
    instance = launched()
    results = {}
    stream_chat(instance["port"], manager.key, results, 0, max_tokens=64)
    times = results[0]["times"]
    assert results[0]["status"] == 200 and len(times) > 32
    span = times[-1] - times[0]
    halfway = times[0] + span / 2
    assert sum(t < halfway for t in times) >= len(times) / 4, "chunks bunched at the end"


def test_gate_queues_fifo_rejects_overflow_and_caps_in_flight(manager, launched):
    # More slots than the gate allows: only the gate can keep llama-server at 4.
    instance = launched(parallel=6, ctx_size=3072, max_concurrent=4, max_queue_depth=6)
    peak = [0, 0]  # our in-flight count, and llama-server's busy slots (its /slots)
    sampling = threading.Event()
    slots_url = f"http://127.0.0.1:{instance['port']}/slots"

    def sample():
        while not sampling.is_set():
            peak[0] = max(peak[0], manager.instance(instance["id"])["active_requests"])
            slots = requests.get(slots_url, headers={"Authorization": f"Bearer {manager.key}"}).json()
            peak[1] = max(peak[1], sum(bool(slot.get("is_processing")) for slot in slots))
            time.sleep(0.02)
    sampler = threading.Thread(target=sample)
    sampler.start()
    results = run_streams(instance["port"], manager.key, 12, spacing=0.05)
    sampling.set()
    sampler.join()
    statuses = [results[i]["status"] for i in range(12)]
    assert statuses.count(429) == 2 and statuses.count(200) == 10, str([(s, results[i].get("error")) for i, s in enumerate(statuses)])
    assert all(results[i]["error"] == "request queue full" for i in range(12) if statuses[i] == 429)
    admitted = [int(results[i]["headers"]["X-Llamaman-Admission"]) for i in range(12) if statuses[i] == 200]
    assert admitted == sorted(admitted), "admission order must equal arrival order"
    assert 0 < peak[0] <= 4 and 0 < peak[1] <= 4


def test_live_resize_never_exceeds_the_current_limit(manager, launched):
    instance = launched(parallel=4, ctx_size=2048, max_concurrent=4, max_queue_depth=20)
    url = manager.url(f"/api/instances/{instance['id']}")
    results, threads = {}, []
    for index in range(10):
        thread = threading.Thread(target=stream_chat, args=(instance["port"], manager.key, results, index, 64))
        thread.start()
        threads.append(thread)
        time.sleep(0.03)
    violations = []
    for limit in (1, 3):
        manager.api.patch(url, json={"max_concurrent": limit}).raise_for_status()
        wait_for(lambda n=limit: manager.instance(instance["id"])["active_requests"] <= n, timeout=90)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            active = manager.instance(instance["id"])["active_requests"]
            if active > limit:
                violations.append((limit, active))
            time.sleep(0.02)
    for thread in threads:
        thread.join()
    assert violations == []
    outcomes = [(results[i]["status"], results[i].get("error")) for i in range(10)]
    assert all(status == 200 for status, _ in outcomes), f"no queued request is dropped: {outcomes}"


def test_waiter_that_disconnects_leaves_the_queue(manager, launched):
    instance = launched(max_concurrent=1, max_queue_depth=5)
    results = {}
    runner = threading.Thread(target=stream_chat, args=(instance["port"], manager.key, results, 0, 200))
    runner.start()
    wait_for(lambda: manager.instance(instance["id"])["active_requests"] == 1)
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).encode()
    waiter = socket.create_connection(("127.0.0.1", instance["port"]))
    waiter.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   + f"Authorization: Bearer {manager.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                   + body)
    wait_for(lambda: manager.instance(instance["id"])["queued_requests"] == 1)
    waiter.close()
    wait_for(lambda: manager.instance(instance["id"])["queued_requests"] == 0, timeout=5)
    assert manager.instance(instance["id"])["active_requests"] == 1, "the running request is untouched"
    runner.join()
    assert results[0]["status"] == 200


def wait_for(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_client_disconnect_frees_the_slot(manager, launched):
    instance = launched()
    response = chat(instance["port"], manager.key, max_tokens=4000, ignore_eos=True)
    lines = response.iter_lines()
    next(line for line in lines if line.startswith(b"data:"))
    assert _monitor_state(manager, instance) == 1, "the slot is busy while generating"
    response.close()
    wait_for(lambda: _monitor_state(manager, instance) == 2, timeout=10)
    assert manager.instance(instance["id"])["active_requests"] == 0


def _monitor_state(manager, instance):
    return manager.api.post(manager.url("/backend/monitor"), json={"model": instance["id"]}).json()["state"]


def test_model_check_auth_and_limits(manager, launched):
    instance = launched()
    port, name = instance["port"], instance["model_name"]
    wrong = chat(port, manager.key, stream=False, model="llama3")
    assert wrong.status_code == 404  # an OpenAI route: the error in OpenAI's shape
    assert wrong.json()["error"]["message"] == "model 'llama3' is not loaded on this port"
    for accepted in (name, name.upper() + ":latest", name[:10]):
        assert chat(port, manager.key, stream=False, model=accepted, max_tokens=2).status_code == 200
    assert chat(port, None, stream=False).status_code == 401
    assert chat(port, "llm-not-a-key", stream=False).status_code == 401
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for key, status in ((manager.key, 200), ("llm-not-a-key", 401)):  # Solar Host's header
        by_header = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                                  headers={"X-API-Key": key}, timeout=60)
        assert by_header.status_code == status, by_header.text
    big = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"x" * (17 * 2**20),
                        headers={"Authorization": f"Bearer {manager.key}", "Content-Type": "application/json"})
    assert big.status_code == 413
    chunked = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                            data=iter([b'{"messages": [{"role": "user", ', b'"content": "hi"}], "max_tokens": 2}']),
                            headers={"Authorization": f"Bearer {manager.key}", "Content-Type": "application/json"})
    assert chunked.status_code == 200 and chunked.json()["choices"]
    token = manager.api.headers["X-CSRF-Token"]
    manager.api.post(manager.url("/api/settings"), json={"require_auth": False},
                     headers={"X-CSRF-Token": token}).raise_for_status()
    try:
        assert chat(port, None, stream=False, max_tokens=2).status_code == 200
    finally:
        manager.api.post(manager.url("/api/settings"), json={"require_auth": True}).raise_for_status()


def test_sampling_overrides_reach_llama_server_live(manager, launched):
    instance = launched()
    url = f"http://127.0.0.1:{instance['port']}/completion"
    headers = {"Authorization": f"Bearer {manager.key}"}
    body = {"prompt": "Hello", "n_predict": 2, "temperature": 1.7, "top_k": 90}
    before = requests.post(url, json=body, headers=headers).json()["generation_settings"]
    assert before["temperature"] == pytest.approx(1.7) and before["top_k"] == 90
    manager.api.patch(manager.url(f"/api/instances/{instance['id']}"), json={
        "proxy_sampling_override_enabled": True, "proxy_sampling_temperature": 0.25,
        "proxy_sampling_top_k": 7, "proxy_sampling_repeat_penalty": 1.15}).raise_for_status()
    after = requests.post(url, json=body, headers=headers).json()["generation_settings"]
    assert after["temperature"] == pytest.approx(0.25) and after["top_k"] == 7
    assert after["repeat_penalty"] == pytest.approx(1.15)
    bad = requests.post(url, data=b"{not json", headers={**headers, "Content-Type": "application/json"})
    assert bad.status_code == 400


def test_share_queue_spreads_load_across_instances(manager, launched):
    # One thread each: two llama-servers spinning two threads apiece on 2 cores crawl.
    first = launched(max_concurrent=2, share_queue=True, threads=1)
    second = launched(max_concurrent=2, share_queue=True, threads=1)
    results = run_streams(first["port"], manager.key, 4, max_tokens=64)
    served_by = [results[i]["headers"]["X-Llamaman-Instance"] for i in range(4)]
    assert sorted(served_by) == sorted([first["id"]] * 2 + [second["id"]] * 2)


def test_idle_sleep_keeps_long_generations_and_wakes_once(manager, launched):
    instance = launched(idle_timeout_min=0.05)  # 3 s
    results = {}
    stream_chat(instance["port"], manager.key, results, 0, max_tokens=300)
    assert results[0]["status"] == 200 and results[0]["times"][-1] - results[0]["sent"] > 3, \
        "the generation must outlast the idle timeout"
    assert len(results[0]["times"]) > 250, "the generation was not cut off"
    manager.wait_status(instance["id"], "sleeping", timeout=20)
    wait_for(lambda: manager.instance(instance["id"])["runtime"] is None, timeout=15)
    wrong = chat(instance["port"], manager.key, stream=False, model="other-model")
    assert wrong.status_code == 404
    assert manager.instance(instance["id"])["status"] == "sleeping", "a wrong model must not wake it"
    probe = requests.get(f"http://127.0.0.1:{instance['port']}/health",
                         headers={"Authorization": f"Bearer {manager.key}"})
    assert probe.status_code == 503 and manager.instance(instance["id"])["status"] == "sleeping"
    attempt = manager.api.get(manager.url(f"/api/instances/{instance['id']}")).json()["attempt"]
    woken = run_streams(instance["port"], manager.key, 5, max_tokens=8)
    assert [woken[i]["status"] for i in range(5)] == [200] * 5
    awake = manager.instance(instance["id"])
    assert awake["status"] == "healthy" and awake["attempt"] == attempt + 1, "exactly one launch"
    assert manager.logs(instance["id"], 200).count("waking on request") == 1


@pytest.mark.parametrize("runtime", ["docker"])
def test_wake_on_docker(request, tmp_path, models_dir, model_path, runtime):
    manager = start_manager(tmp_path, runtime_env(runtime, request, models_dir, ports=25200))
    try:
        instance = manager.wait_status(manager.launch(model_path, idle_timeout_min=0.02)["id"], "healthy")
        manager.wait_status(instance["id"], "sleeping", timeout=20)
        response = chat(instance["port"], manager.key)
        assert response.status_code == 200, response.text
        chunks, done = parse_chat_stream(response.iter_lines())
        assert done and chunks
        assert manager.instance(instance["id"])["status"] == "healthy"
    finally:
        manager.app.kill()
        remove_product_containers(request.getfixturevalue("docker_client"))
