"""Instance lifecycle through the REST API, on both runtimes, with the real gemma model."""
import json

import pytest
import requests

from tests.e2e.instancekit import (
    RUNTIMES,
    chat,
    remove_product_containers,
    runtime_env,
    start_manager,
)
from tests.helpers import parse_chat_stream

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(params=RUNTIMES)
def manager(request, tmp_path, models_dir):
    env = runtime_env(request.param, request, models_dir, ports=21000 if request.param == "process" else 22000)
    manager = start_manager(tmp_path, env)
    manager.runtime = request.param
    yield manager
    for instance in manager.api.get(manager.url("/api/instances")).json():
        manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
    manager.app.kill()
    if request.param == "docker":
        remove_product_containers(request.getfixturevalue("docker_client"))


def test_launch_chat_logs_stop_restart_remove(manager, model_path):
    launched = manager.launch(model_path)
    assert launched["status"] == "starting" and "api_key" not in launched
    instance = manager.wait_status(launched["id"], "healthy")
    assert instance["load_time_s"] > 0 and instance["runtime"]["kind"] == manager.runtime
    port = instance["port"]

    assert chat(port, None).status_code == 401
    response = chat(port, manager.key)
    chunks, done = parse_chat_stream(response.iter_lines())
    assert response.status_code == 200 and done
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])

    internal = requests.get(f"http://127.0.0.1:{instance['internal_port']}/v1/models", timeout=5)
    assert internal.status_code == 401, "llama-server must demand the internal key"

    lines = manager.api.get(manager.url(f"/api/instances/{instance['id']}/logs?lines=5")).json()["lines"]
    assert 0 < len(lines) <= 5

    stopped = manager.api.delete(manager.url(f"/api/instances/{instance['id']}")).json()
    assert stopped["status"] == "stopped"
    with pytest.raises(requests.ConnectionError):
        chat(port, manager.key)

    manager.api.post(manager.url(f"/api/instances/{instance['id']}/restart")).raise_for_status()
    again = manager.wait_status(instance["id"], "healthy")
    assert again["port"] == port
    assert chat(port, manager.key, stream=False).json()["choices"][0]["message"]["content"] is not None

    assert manager.api.delete(manager.url(f"/api/instances/{instance['id']}/remove")).status_code == 409
    manager.api.delete(manager.url(f"/api/instances/{instance['id']}"))
    assert manager.api.delete(manager.url(f"/api/instances/{instance['id']}/remove")).status_code == 200
    assert manager.api.get(manager.url(f"/api/instances/{instance['id']}")).status_code == 404


def test_log_stream_resumes_without_gaps_or_duplicates(manager, model_path):
    instance = manager.wait_status(manager.launch(model_path)["id"], "healthy")
    url = manager.url(f"/api/instances/{instance['id']}/logs/stream?lines=6")
    first = _read_events(manager.api, url, 6)
    assert len(first) == 6 and len({event_id for event_id, _ in first}) == 6
    resumed = _read_events(manager.api, url, 3, headers={"Last-Event-ID": first[2][0]})
    assert resumed == first[3:6]


def _read_events(session, url, count, headers=None):
    events, current = [], {}
    with session.get(url, stream=True, headers=headers or {}, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response.iter_lines():
            line = raw.decode()
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("data: "):
                current["data"] = line[6:]
            elif not line and current:
                events.append((current["id"], current["data"]))
                current = {}
                if len(events) == count:
                    break
    return events


def test_monitor_and_shutdown_by_model_name(manager, model_path):
    instance = manager.wait_status(manager.launch(model_path)["id"], "healthy")
    name = instance["model_name"]
    monitor = manager.api.post(manager.url("/backend/monitor"), json={"model": name})
    assert monitor.status_code == 200
    report = monitor.json()
    assert report["state"] == 2 and report["memory"]["total"] > 10 * 2**20
    assert manager.api.post(manager.url("/v1/backend/monitor"), json={}).status_code == 400
    assert manager.api.post(manager.url("/backend/monitor"), json={"model": "nope"}).status_code == 400
    shut = manager.api.post(manager.url("/backend/shutdown"), json={"model": name})
    assert shut.status_code == 200
    assert manager.instance(instance["id"])["status"] == "stopped"


def test_stats_export_and_parse_command(manager, model_path):
    instance = manager.wait_status(manager.launch(model_path, threads=1)["id"], "healthy")
    stats = manager.api.get(manager.url(f"/api/instances/{instance['id']}/stats")).json()
    assert stats["mem_used"] > 10 * 2**20 and stats["uptime_s"] >= 0 and stats["load_time_s"] > 0
    assert stats["gpus"] == []
    exported = manager.api.get(manager.url(f"/api/instances/{instance['id']}/export")).json()
    assert exported["model_path"] == str(model_path) and exported["threads"] == 1
    parsed = manager.api.post(manager.url("/api/instances/parse-command"), json={
        "command": f"llama-server -m {model_path} -c 2048 -ngl 10 --flash-attn on"}).json()
    assert parsed["ctx_size"] == 2048 and parsed["n_gpu_layers"] == 10 and "--flash-attn" in json.dumps(parsed)


def test_bad_gguf_fails_with_the_server_log_and_frees_ports(manager, tmp_path, models_dir):
    broken = models_dir / "e2e-broken.gguf"
    broken.write_bytes(b"GGUF" + b"\xff" * 4096)
    try:
        first_free = manager.api.get(manager.url("/api/next-port")).json()["port"]
        failed = manager.wait_status(manager.launch(broken)["id"], "failed", timeout=60)
        assert failed["error"] and len(failed["error"].splitlines()) > 1
        assert manager.api.get(manager.url("/api/next-port")).json()["port"] == first_free
    finally:
        broken.unlink()


def test_memory_limit_too_small_fails_cleanly(manager, model_path):
    failed = manager.wait_status(manager.launch(model_path, memory_limit="24m")["id"], "failed", timeout=90)
    assert failed["error"]
