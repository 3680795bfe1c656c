"""Solar Host's instance REST API at its own paths (/instances…), against a real native llama-server."""
import json
import time

import pytest
import requests
from websockets.sync.client import connect

from tests.e2e.instancekit import runtime_env, start_manager

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def manager(request, tmp_path_factory, models_dir):
    manager = start_manager(tmp_path_factory.mktemp("solar"), runtime_env("process", request, models_dir, ports=27000))
    admin = manager.api.post(manager.url("/api/api-keys"), json={"name": "solar", "scope": "admin"})
    manager.key_header = {"X-API-Key": admin.json()["key"]}
    yield manager
    manager.app.kill()


def config(model_path, **extra):
    return {"config": {"model": str(model_path), "alias": "gemma:270m", "threads": 2, "n_gpu_layers": 0,
                       "temp": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "ctx_size": 512,
                       "host": "0.0.0.0", "api_key": "instance-key", **extra}}


def call(manager, method, path, **kwargs):
    return requests.request(method, manager.url(path), headers=manager.key_header, timeout=120, **kwargs)


def wait_for(manager, instance_id, status, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = call(manager, "GET", f"/instances/{instance_id}").json()
        if seen["status"] == status:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{instance_id} never became {status}: {seen}")


def serving(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    except requests.ConnectionError:
        return False


def test_solar_session(manager, model_path):
    created = call(manager, "POST", "/instances", json=config(model_path))
    assert created.status_code == 201, created.text
    instance = created.json()["instance"]
    instance_id = instance["id"]
    assert created.json()["message"] == f"Instance {instance_id} created successfully"
    assert instance["status"] == "stopped"
    assert instance["config"]["model"] == str(model_path) and instance["config"]["alias"] == "gemma:270m"
    assert {k: instance["config"][k] for k in ("temp", "top_p", "top_k", "min_p")} == \
        {"temp": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05}
    assert "api_key" not in instance["config"]
    assert [i["id"] for i in call(manager, "GET", "/instances").json()] == [instance_id]
    assert call(manager, "POST", "/instances", json=config(model_path)).status_code == 409  # alias taken

    started = call(manager, "POST", f"/instances/{instance_id}/start")
    assert started.status_code == 200, started.text
    running = wait_for(manager, instance_id, "running")
    assert running["port"] == instance["port"] and running["error_message"] is None
    props = call(manager, "GET", f"/api/v1/instances/{instance_id}/proxy/props").json()
    params = props["default_generation_settings"]["params"]
    assert (params["top_k"], round(params["temperature"], 3), round(params["min_p"], 3)) == (40, 0.7, 0.05)

    url = f"ws://127.0.0.1:{manager.app.ui_port}/instances/{instance_id}/logs?after=0"
    with connect(url, additional_headers=manager.key_header, open_timeout=30) as ws:
        lines = []
        while not any("listening on" in line for line in lines):
            lines.append(json.loads(ws.recv(timeout=60))["line"])
    assert any(f"launching {model_path}" in line for line in lines)

    stopped = call(manager, "POST", f"/instances/{instance_id}/stop")
    assert stopped.status_code == 200 and stopped.json()["instance"]["status"] == "stopped"
    assert not serving(instance["port"])

    deleted = call(manager, "DELETE", f"/instances/{instance_id}")
    assert deleted.status_code == 200, deleted.text
    assert call(manager, "GET", f"/instances/{instance_id}").status_code == 404
    assert call(manager, "GET", "/instances").json() == []


def test_update_restarts_a_running_instance_and_delete_stops_it(manager, model_path):
    instance = call(manager, "POST", "/instances", json=config(model_path, alias="upd")).json()["instance"]
    call(manager, "POST", f"/instances/{instance['id']}/start").raise_for_status()
    wait_for(manager, instance["id"], "running")
    renamed = call(manager, "PUT", f"/instances/{instance['id']}", json=config(model_path, alias="other", temp=0.2))
    assert renamed.status_code == 400 and "alias" in renamed.json()["error"]
    assert call(manager, "GET", f"/instances/{instance['id']}").json()["config"]["temp"] == 0.7
    update = call(manager, "PUT", f"/instances/{instance['id']}", json=config(model_path, alias="upd", temp=0.2))
    assert update.status_code == 200, update.text
    assert update.json()["restarted"] is True and set(update.json()["changes"]) == {"settings"}
    after = wait_for(manager, instance["id"], "running")
    assert after["config"]["temp"] == 0.2 and after["port"] == instance["port"]
    assert call(manager, "DELETE", f"/instances/{instance['id']}").status_code == 200
    assert call(manager, "GET", "/instances").json() == []
    assert not serving(instance["port"])


def test_bad_input_is_refused_and_creates_nothing(manager, model_path):
    bad = [
        {}, {"config": "x"}, {"config": {"alias": "a"}}, config(model_path, alias=""),
        config(model_path, alias=None), config(model_path, temp=2.5), config(model_path, temp="hot"),
        config(model_path, top_k=-1), config(model_path, top_k=1.5), config(model_path, min_p=1.2),
        config(model_path, special="yes"), config(model_path, host="127.0.0.1"),
        config(model_path, api_key=5), config(model_path, threads=0), config(model_path, unknown=1),
        config(model_path, chat_template_file=""), config("/etc/passwd"),
    ]
    for payload in bad:
        response = call(manager, "POST", "/instances", json=payload)
        assert response.status_code == 400, (payload, response.text)
        assert response.json()["error"]
    broken = requests.post(manager.url("/instances"), data="{", timeout=10,
                           headers={**manager.key_header, "Content-Type": "application/json"})
    assert broken.status_code == 400
    assert call(manager, "GET", "/instances").json() == []
    for method, path in (("GET", "/instances/nope"), ("PUT", "/instances/nope"), ("DELETE", "/instances/nope"),
                         ("POST", "/instances/nope/start"), ("POST", "/instances/nope/stop"),
                         ("POST", "/instances/nope/restart")):
        response = call(manager, method, path, json=config(model_path))
        assert response.status_code == 404, (method, path, response.text)


def test_instances_need_an_admin_key(manager, model_path):
    assert requests.get(manager.url("/instances"), timeout=10).status_code == 401
    assert requests.get(manager.url("/instances"), headers={"X-API-Key": "llm-wrong"}, timeout=10).status_code == 401
    inference = {"X-API-Key": manager.key}
    assert requests.get(manager.url("/instances"), headers=inference, timeout=10).status_code == 403
    refused = requests.post(manager.url("/instances"), json=config(model_path), headers=inference, timeout=10)
    assert refused.status_code == 403
    assert call(manager, "GET", "/instances").json() == []
    assert requests.get(manager.url("/health"), timeout=10).json() == {"status": "ok"}  # ours, not Solar's
