"""Launch validation: every bad input is a 4xx that starts nothing."""
import os
import socket

import pytest

from tests.appkit import make_app, setup_admin

GOOD = {"ctx_size": 512}


@pytest.fixture
def env(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "ok.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    (models / "notes.txt").write_text("not a model")
    (tmp_path / "outside.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    os.symlink(tmp_path / "outside.gguf", models / "escape.gguf")
    app = make_app(tmp_path, MODELS_DIR=str(models), LLAMAMAN_RUNTIME="process",
                   LLAMA_SERVER_BIN="/nonexistent/llama-server",
                   PORT_RANGE_START="24000", PORT_RANGE_END="24009",
                   INTERNAL_PORT_RANGE_START="24100", INTERNAL_PORT_RANGE_END="24109")
    client = app.test_client()
    token = setup_admin(client)
    yield app, client, token, models
    app.extensions["llamaman"].stop()


def launch(client, token, body):
    return client.post("/api/instances", json=body, headers={"X-CSRF-Token": token})


@pytest.mark.parametrize("model_path", [
    "../outside.gguf", "{tmp}/outside.gguf", "/etc/passwd", "escape.gguf", "{models}", "", ".",
    "missing.gguf", "notes.txt", "ok.gguf\x00.txt", 42, None,
])
def test_bad_model_paths(env, tmp_path, model_path):
    _app, client, token, models = env
    if isinstance(model_path, str):
        model_path = model_path.format(tmp=tmp_path, models=models)
    response = launch(client, token, {**GOOD, "model_path": model_path})
    assert response.status_code == 400 and "model" in response.get_json()["error"]
    assert client.get("/api/instances").get_json() == []


@pytest.mark.parametrize("fields, status, needle", [
    ({"port": 8000}, 400, "port"),
    ({"port": "24001"}, 400, "port"),
    ({"extra_args": "--port 9999"}, 400, "--port"),
    ({"extra_args": "--host=0.0.0.0"}, 400, "--host"),
    ({"extra_args": "-m /etc/passwd"}, 400, "--model"),
    ({"extra_args": "--api-key x"}, 400, "--api-key"),
    ({"extra_args": "--flash-attn 'unterminated"}, 400, "extra_args"),
    ({"ctx_size": -5}, 400, "ctx_size"),
    ({"threads": 100000}, 400, "threads"),
    ({"parallel": 0}, 400, "parallel"),
    ({"memory_limit": "lots"}, 400, "memory_limit"),
    ({"gpu_devices": "0,x"}, 400, "gpu_devices"),
    ({"max_concurrent": -1}, 400, "max_concurrent"),
    ({"proxy_sampling_top_p": 0}, 400, "proxy_sampling_top_p"),
    ({"share_queue": "yes"}, 400, "share_queue"),
    ({"unknown_field": 1}, 400, "unknown"),
    ({"name": "x" * 65}, 400, "name"),
])
def test_bad_launch_fields(env, fields, status, needle):
    _app, client, token, models = env
    response = launch(client, token, {**GOOD, "model_path": str(models / "ok.gguf"), **fields})
    assert response.status_code == status and needle in response.get_json()["error"]
    assert client.get("/api/instances").get_json() == []


def test_port_already_taken(env):
    _app, client, token, _models = env
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 24003))
        busy.listen()
        response = launch(client, token, {**GOOD, "model_path": "ok.gguf", "port": 24003})
    assert response.status_code == 409 and "24003" in response.get_json()["error"]
    assert client.get("/api/instances").get_json() == []


def test_malformed_bodies(env):
    _app, client, token, _models = env
    for data, ctype in (("{bad", "application/json"), ("[]", "application/json"), ("x", "text/plain")):
        response = client.post("/api/instances", data=data, content_type=ctype,
                               headers={"X-CSRF-Token": token})
        assert response.status_code == 400
    assert client.get("/api/instances").get_json() == []


@pytest.mark.parametrize("method, path", [
    ("get", "/api/instances/nope"), ("delete", "/api/instances/nope"),
    ("post", "/api/instances/nope/restart"), ("delete", "/api/instances/nope/remove"),
    ("get", "/api/instances/nope/logs"), ("get", "/api/instances/nope/logs/stream"),
    ("get", "/api/instances/nope/stats"), ("get", "/api/instances/..%2F..%2Fetc/logs"),
])
def test_unknown_instance_ids_are_404(env, method, path):
    _app, client, token, _models = env
    response = getattr(client, method)(path, headers={"X-CSRF-Token": token})
    assert response.status_code == 404


def test_bad_log_line_counts(env):
    _app, client, _token, _models = env
    for lines in ("-1", "abc", "100001"):
        assert client.get(f"/api/instances/x/logs?lines={lines}").status_code in (400, 404)


def test_launch_without_a_runtime_fails_with_a_reason(env):
    _app, client, token, _models = env
    response = launch(client, token, {**GOOD, "model_path": "ok.gguf"})
    assert response.status_code == 201
    instance_id = response.get_json()["id"]
    import time
    deadline = time.monotonic() + 10
    while client.get(f"/api/instances/{instance_id}").get_json()["status"] == "starting":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    failed = client.get(f"/api/instances/{instance_id}").get_json()
    assert failed["status"] == "failed" and "llama-server" in failed["error"]
    assert client.get("/api/next-port").get_json()["port"] == 24000, "a failed launch frees its port"


def test_launch_uses_the_full_preset_under_explicit_fields(env):
    _app, client, token, models = env
    saved = client.put(f"/api/presets{models}/ok.gguf", headers={"X-CSRF-Token": token},
                       json={"ctx_size": 640, "max_concurrent": 3, "proxy_sampling_top_k": 11})
    assert saved.status_code == 200, saved.get_data(as_text=True)
    launched = launch(client, token, {"model_path": "ok.gguf", "ctx_size": 512})
    assert launched.status_code == 201
    record = launched.get_json()
    assert record["ctx_size"] == 512, "an explicit field wins over the preset"
    assert record["max_concurrent"] == 3 and record["proxy_sampling_top_k"] == 11
