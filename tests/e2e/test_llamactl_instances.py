"""llamactl's instance API by name (on-demand start, update & restart, per-instance options),
Solar Host's log socket and LocalAI's memory breakdown, against a real native llama-server."""
import json
import threading
import time

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.e2e.instancekit import runtime_env, start_manager

pytestmark = pytest.mark.timeout(600)

V1 = "/api/v1/instances"
MODEL_NAME = "gemma-3-270m-q4_k_m"
HELLO = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, models_dir):
    # Docker unreachable on purpose: asking for the docker runtime must be a 400 here.
    env = {**runtime_env("process", request, models_dir, ports=26400), "DOCKER_HOST": "unix:///nonexistent.sock"}
    manager = start_manager(tmp_path_factory.mktemp("llamactl"), env)
    admin = manager.api.post(manager.url("/api/api-keys"), json={"name": "llamactl", "scope": "admin"})
    manager.admin = {"Authorization": f"Bearer {admin.json()['key']}"}
    yield manager
    remove_all(manager)
    manager.app.kill()


@pytest.fixture(autouse=True)
def clean(manager):
    yield
    remove_all(manager)


def remove_all(manager):
    for instance in requests.get(manager.url(V1), headers=manager.admin).json():
        requests.post(manager.url(f"{V1}/{instance['id']}/stop"), headers=manager.admin)
        requests.delete(manager.url(f"{V1}/{instance['id']}"), headers=manager.admin)


def body(model_path, **extra):
    options = {"model": str(model_path), "ctx_size": 512, "threads": 2, "parallel": 1, "gpu_layers": 0}
    return {"backend_type": "llama_cpp", "backend_options": {**options, **extra.pop("backend", {})}, **extra}


def create(manager, name, model_path, **extra):
    response = requests.post(manager.url(f"{V1}/{name}"), json=body(model_path, **extra), headers=manager.admin)
    assert response.status_code == 201, response.text
    return response.json()


def get(manager, name):
    response = requests.get(manager.url(f"{V1}/{name}"), headers=manager.admin)
    response.raise_for_status()
    return response.json()


def wait_for(manager, name, status, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = get(manager, name)
        if seen["llamaman_status"] == status:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{name} never became {status}: {seen}\n{logs(manager, name)}")


def logs(manager, name, lines=2000):
    return requests.get(manager.url(f"{V1}/{name}/logs?lines={lines}"), headers=manager.admin).text


def launches(manager, name):
    return logs(manager, name).count("] launching ")


def proxy_chat(manager, name, headers):
    return requests.post(manager.url(f"{V1}/{name}/proxy/v1/chat/completions"), json=HELLO,
                         headers=headers, timeout=180)


def test_llamactl_session_by_name(manager, model_path):
    created = create(manager, "session-a", model_path, on_demand_start=True, max_restarts=2)
    assert created["status"] == "stopped" and created["options"]["on_demand_start"] is True
    assert created["options"]["backend_options"]["model"] == str(model_path)
    assert created["llamaman_status"] == "sleeping"  # parked: its port waits for the first request
    assert launches(manager, "session-a") == 0

    again = requests.post(manager.url(f"{V1}/session-a"), json=body(model_path), headers=manager.admin)
    assert again.status_code == 409
    listed = requests.get(manager.url(V1), headers=manager.admin).json()
    assert [i["name"] for i in listed] == ["session-a"]

    inference = {"Authorization": f"Bearer {manager.key}"}
    first = proxy_chat(manager, "session-a", inference)
    assert first.status_code == 200, first.text
    assert first.json()["choices"][0]["message"]["role"] == "assistant"
    running = get(manager, "session-a")
    assert running["status"] == "running" and running["health"] == "ready"
    assert launches(manager, "session-a") == 1
    health = requests.get(manager.url(f"{V1}/session-a/proxy/health"), headers=inference)
    assert health.status_code == 200 and health.json()["status"] == "ok"

    text = logs(manager, "session-a")
    assert "waking on request" in text and "listening on" in text

    before = manager.instance(running["id"])
    update = requests.put(manager.url(f"{V1}/session-a"), headers=manager.admin,
                          json={"backend_options": {"ctx_size": 1024}, "max_restarts": 5})
    assert update.status_code == 200, update.text
    result = update.json()
    assert result["restarted"] is True
    assert set(result["changes"]) == {"settings", "max_restarts"}
    assert result["changes"]["max_restarts"] == {"from": 2, "to": 5}
    assert result["changes"]["settings"]["to"]["ctx_size"] == 1024
    after = wait_for(manager, "session-a", "healthy")
    assert after["port"] == before["port"] and after["options"]["backend_options"]["ctx_size"] == 1024
    assert manager.instance(running["id"])["runtime"]["handle"] != before["runtime"]["handle"]
    slots = requests.get(f"http://127.0.0.1:{after['port']}/slots", headers=inference).json()
    assert slots[0]["n_ctx"] == 1024  # llama-server itself runs with the new setting

    assert requests.delete(manager.url(f"{V1}/session-a"), headers=manager.admin).status_code == 409
    stopped = requests.post(manager.url(f"{V1}/session-a/stop"), headers=manager.admin).json()
    assert stopped["status"] == "stopped"
    assert requests.delete(manager.url(f"{V1}/session-a"), headers=manager.admin).status_code == 204
    assert requests.get(manager.url(f"{V1}/session-a"), headers=manager.admin).status_code == 404
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{after['port']}/health", timeout=5)


def test_burst_at_a_stopped_on_demand_instance_launches_once(manager, model_path):
    created = create(manager, "burst-a", model_path, on_demand_start=True)
    inference = {"Authorization": f"Bearer {manager.key}"}
    public = f"http://127.0.0.1:{created['port']}/v1/chat/completions"
    compat = manager.app.url("/v1/chat/completions", manager.app.proxy_port)
    ollama = manager.app.url("/api/chat", manager.app.proxy_port)
    sends = [lambda: requests.post(public, json=HELLO, headers=inference, timeout=300)] * 4
    sends += [lambda: proxy_chat(manager, "burst-a", inference)] * 3
    sends += [lambda: requests.post(compat, json={**HELLO, "model": MODEL_NAME}, headers=inference, timeout=300)] * 2
    sends += [lambda: requests.post(ollama, headers=inference, timeout=300, json={
        "model": MODEL_NAME, "messages": HELLO["messages"], "stream": False, "options": {"num_predict": 4}})]
    statuses = [None] * len(sends)
    start = threading.Barrier(len(sends))

    def send(index):
        start.wait()
        statuses[index] = sends[index]().status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(sends))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 10, logs(manager, "burst-a")
    assert launches(manager, "burst-a") == 1
    listed = requests.get(manager.url(V1), headers=manager.admin).json()
    assert [i["name"] for i in listed] == ["burst-a"]  # the compat API used it, launched no other


def test_log_socket_resumes_without_gaps_or_duplicates(manager, model_path):
    created = create(manager, "ws-a", model_path)
    started = requests.post(manager.url(f"{V1}/ws-a/start"), headers=manager.admin)
    assert started.status_code == 200, started.text
    wait_for(manager, "ws-a", "healthy")
    socket_url = f"ws://127.0.0.1:{manager.app.ui_port}/instances/{created['id']}/logs"
    key = {"X-API-Key": manager.admin["Authorization"].split()[1]}

    with pytest.raises(InvalidStatus) as refused:
        connect(socket_url + "?after=0", open_timeout=30)
    assert refused.value.response.status_code == 401

    first = []
    with connect(socket_url + "?after=0", additional_headers=key, open_timeout=30) as ws:
        while len(first) < 5:
            first.append(_message(ws))
    # Disconnected mid-stream; more lines are written while nobody listens.
    assert requests.post(f"http://127.0.0.1:{created['port']}/v1/chat/completions", json=HELLO,
                         headers={"Authorization": f"Bearer {manager.key}"}, timeout=120).status_code == 200
    requests.post(manager.url(f"{V1}/ws-a/stop"), headers=manager.admin).raise_for_status()

    second = []
    resume = f"ws://127.0.0.1:{manager.app.ui_port}/instances/ws-a/logs?after={first[-1]['seq']}"
    with connect(resume, additional_headers=key, open_timeout=30) as ws:
        while not second or "stopped by request" not in second[-1]["line"]:
            second.append(_message(ws))

    seen = first + second
    seqs = [m["seq"] for m in seen]
    assert seqs == sorted(set(seqs))
    whole = requests.get(manager.url(f"/api/instances/{created['id']}/logs?lines=10000"),
                         headers=manager.admin).json()["lines"]
    assert [m["line"] for m in seen] == whole


def _message(ws):
    return json.loads(ws.recv(timeout=60))


def test_names_and_options_are_validated(manager, model_path):
    bad = [
        ("bad%20name", body(model_path)),
        ("x" * 51, body(model_path)),
        ("semi;colon", body(model_path)),
        ("ok-name", body(model_path, environment={"1BAD": "x"})),
        ("ok-name", body(model_path, environment={"BAD-NAME": "x"})),
        ("ok-name", body(model_path, environment={"LLAMA_API_KEY": "x"})),
        ("ok-name", body(model_path, command_override="/usr/bin/llama-server; rm -rf /")),
        ("ok-name", body(model_path, command_override="llama-server")),
        ("ok-name", body(model_path, command_override="/nonexistent/llama-server")),
        ("ok-name", body(model_path, docker_enabled=True)),  # Docker does not answer here
        ("ok-name", {**body(model_path), "backend_type": "vllm"}),
        ("ok-name", body(model_path, nodes=["another-node"])),
        ("ok-name", body(model_path, backend={"host": "0.0.0.0"})),
        ("ok-name", body("/etc/passwd")),
    ]
    for name, payload in bad:
        response = requests.post(manager.url(f"{V1}/{name}"), json=payload, headers=manager.admin)
        assert response.status_code == 400, (name, payload, response.text)
        assert response.json()["error"]
    assert requests.get(manager.url(V1), headers=manager.admin).json() == []
    ours = manager.api.post(manager.url("/api/instances"), json={"model_path": str(model_path),
                                                                 "environment": {"A B": "1"}})
    assert ours.status_code == 400 and "identifier" in ours.json()["error"]
    inference = {"Authorization": f"Bearer {manager.key}"}
    assert requests.get(manager.url(V1), headers=inference).status_code == 403


def test_environment_reaches_llama_server_and_monitor_reports_components(manager, model_path):
    # llama-server reads LLAMA_ARG_LOG_VERBOSITY: at 4 it logs its buffer sizes while loading.
    create(manager, "mon-a", model_path, environment={"LLAMA_ARG_LOG_VERBOSITY": "4"})
    requests.post(manager.url(f"{V1}/mon-a/start"), headers=manager.admin).raise_for_status()
    wait_for(manager, "mon-a", "healthy")
    response = requests.post(manager.url("/backend/monitor"), json={"model": "mon-a"}, headers=manager.admin)
    assert response.status_code == 200, response.text
    memory = response.json()["memory"]
    assert {"weights", "kv_cache", "compute_buffers"} <= set(memory["breakdown"])
    assert all(value > 0 for value in memory["breakdown"].values())
    assert memory["total"] == sum(memory["breakdown"].values())
    assert memory["breakdown"]["weights"] > memory["breakdown"]["kv_cache"]  # 270M weights vs 512-token cache
