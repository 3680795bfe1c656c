"""The presets API through the real app: CRUD, validation, path rules, node scoping."""
import os

import pytest

from tests.appkit import ADMIN, create_key, csrf_of, make_app, setup_admin

FULL = {
    "n_gpu_layers": 0, "ctx_size": 2048, "parallel": 2, "threads": 4, "memory_limit": "8g",
    "gpu_devices": "0,1", "embedding": False, "spec_decoding": True, "draft_n_max": 3,
    "extra_args": "--flash-attn on", "idle_timeout_min": 5.0, "max_concurrent": 2, "max_queue_depth": 10,
    "share_queue": True, "proxy_sampling_override_enabled": True, "proxy_sampling_temperature": 0.3,
    "proxy_sampling_top_k": 20, "proxy_sampling_top_p": 0.9, "proxy_sampling_presence_penalty": 0.5,
    "proxy_sampling_repeat_penalty": 1.1, "auto_restart": False, "max_restarts": 2, "restart_delay": 1.5,
}


@pytest.fixture
def env(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "ok.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    (models / "notes.txt").write_text("not a model")
    (tmp_path / "outside.gguf").write_bytes(b"GGUF")
    os.symlink(tmp_path / "outside.gguf", models / "escape.gguf")
    app = make_app(tmp_path, MODELS_DIR=str(models))
    client = app.test_client()
    token = setup_admin(client)
    yield app, client, {"X-CSRF-Token": token}, models
    app.extensions["llamaman"].stop()


def test_crud_round_trip(env):
    _app, client, headers, models = env
    url = f"/api/presets{models}/ok.gguf"
    assert client.get(url).status_code == 404
    saved = client.put(url, json=FULL, headers=headers)
    assert saved.status_code == 200, saved.get_json()
    expected = {"model_path": str(models / "ok.gguf"), **FULL}
    assert saved.get_json() == {"preset": expected, "applied": [], "needs_relaunch": [], "status": "saved"}
    assert client.get(url).get_json() == expected
    assert client.get("/api/presets").get_json() == {expected["model_path"]: expected}
    # a GET body saved back is accepted unchanged; a partial save keeps the other fields
    assert client.put(url, json=expected, headers=headers).status_code == 200
    assert client.put(url, json={"ctx_size": 1024}, headers=headers).get_json()["preset"] == {
        **expected, "ctx_size": 1024}
    assert client.delete(url, headers=headers).get_json() == {"ok": True, "status": "deleted"}
    assert client.get(url).status_code == 404
    assert client.delete(url, headers=headers).status_code == 404
    assert client.get("/api/presets").get_json() == {}


@pytest.mark.parametrize("url", [
    "/api/presets{models}/ok.gguf", "/api/presets/{models}/ok.gguf", "/api/presets/%2F{models_rel}/ok.gguf",
    "/api/presets/ok.gguf", "/api/presets/./sub/../ok.gguf",
])
def test_absolute_and_relative_urls_name_one_preset(env, url):
    _app, client, headers, models = env
    url = url.format(models=models, models_rel=str(models).lstrip("/"))
    assert client.put(url, json={"ctx_size": 1024}, headers=headers).status_code == 200
    assert list(client.get("/api/presets").get_json()) == [str(models / "ok.gguf")]
    assert client.get(url).get_json()["ctx_size"] == 1024
    assert client.delete(url, headers=headers).status_code == 200


def test_models_still_downloading_can_have_presets(env):
    _app, client, headers, models = env
    for name in ("later.gguf", "org/Model-00001-of-00002.gguf", "Qwen2.5-0.5B-Instruct"):
        response = client.put(f"/api/presets/{name}", json={"ctx_size": 1024}, headers=headers)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["preset"]["model_path"] == str(models / name)
    assert not (models / "later.gguf").exists() and not (models / "org").exists()


@pytest.mark.parametrize("path", [
    "../outside.gguf", "..%2Foutside.gguf", "sub/../../outside.gguf", "/etc/x.gguf", "/{tmp}/outside.gguf",
    "escape.gguf", "notes.txt", "later.json", "/{models}", "/{models}/", ".",
])
def test_paths_outside_models_dir_or_not_models_are_400(env, tmp_path, path):
    _app, client, headers, models = env
    path = path.format(tmp=str(tmp_path).lstrip("/"), models=str(models).lstrip("/"))
    url = f"/api/presets/{path}"
    response = client.put(url, json={"ctx_size": 1024}, headers=headers)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"] == "model_path"
    assert client.get(url).status_code == 400
    assert client.delete(url, headers=headers).status_code == 400
    assert client.get("/api/presets").get_json() == {}


@pytest.mark.parametrize("field, value", [
    ("n_gpu_layers", -2), ("ctx_size", "big"), ("parallel", 0), ("threads", 2000), ("memory_limit", "1k"),
    ("gpu_devices", "a,b"), ("embedding", "yes"), ("spec_decoding", 1), ("draft_n_max", 0),
    ("extra_args", "--host 0.0.0.0"), ("idle_timeout_min", -1), ("max_concurrent", "2"),
    ("max_queue_depth", -1), ("share_queue", 1), ("proxy_sampling_override_enabled", "true"),
    ("proxy_sampling_temperature", 2.1), ("proxy_sampling_top_k", -1), ("proxy_sampling_top_p", 1.5),
    ("proxy_sampling_presence_penalty", 2.5), ("proxy_sampling_repeat_penalty", -0.1),
    ("auto_restart", "no"), ("max_restarts", -1), ("restart_delay", 4000),
    ("port", 8000), ("name", "x"), ("unknown_field", 1),
])
def test_each_bad_field_is_400_and_nothing_is_stored(env, field, value):
    _app, client, headers, _models = env
    client.put("/api/presets/ok.gguf", json={"ctx_size": 1024}, headers=headers)
    response = client.put("/api/presets/ok.gguf", json={"ctx_size": 4096, field: value}, headers=headers)
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == field and field in body["error"]
    assert client.get("/api/presets/ok.gguf").get_json() == {
        "model_path": str(env[3] / "ok.gguf"), "ctx_size": 1024}


@pytest.mark.parametrize("body", [[1], "x", None])
def test_non_object_bodies_are_400(env, body):
    _app, client, headers, _models = env
    response = client.put("/api/presets/ok.gguf", json=body, headers=headers)
    assert response.status_code == 400
    assert client.get("/api/presets").get_json() == {}


def test_writes_need_admin_and_csrf(env):
    _app, client, headers, _models = env
    assert client.put("/api/presets/ok.gguf", json={"ctx_size": 1024}).status_code in (400, 403)
    inference = create_key(client, headers["X-CSRF-Token"])["key"]
    bearer = {"Authorization": f"Bearer {inference}"}
    anonymous = client.application.test_client()
    assert anonymous.put("/api/presets/ok.gguf", json={"ctx_size": 1024}, headers=bearer).status_code == 403
    assert anonymous.get("/api/presets", headers=bearer).status_code == 403
    assert anonymous.get("/api/presets").status_code == 401
    assert client.get("/api/presets").get_json() == {}


def test_presets_are_node_scoped(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    apps = [make_app(tmp_path, MODELS_DIR=str(models), LLAMAMAN_NODE_NAME=name) for name in ("srv1", "srv2")]
    try:
        first, second = (app.test_client() for app in apps)
        first_headers = {"X-CSRF-Token": setup_admin(first)}
        second_headers = {"X-CSRF-Token": setup_admin_or_login(second)}
        assert first.put("/api/presets/m.gguf", json={"ctx_size": 1024}, headers=first_headers).status_code == 200
        assert second.get("/api/presets").get_json() == {}
        assert second.get("/api/presets/m.gguf").status_code == 404
        assert second.delete("/api/presets/m.gguf", headers=second_headers).status_code == 404
        second.put("/api/presets/m.gguf", json={"ctx_size": 2048}, headers=second_headers)
        assert first.get("/api/presets/m.gguf").get_json()["ctx_size"] == 1024
        assert second.get("/api/presets/m.gguf").get_json()["ctx_size"] == 2048
        assert all("node" not in p for p in first.get("/api/presets").get_json().values())
    finally:
        for app in apps:
            app.extensions["llamaman"].stop()


def setup_admin_or_login(client) -> str:
    """Log in the admin that the first app set up (users are shared across nodes)."""
    token = csrf_of(client, "/login")
    response = client.post("/login", data={**ADMIN, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return csrf_of(client, "/")


def test_launch_body_merges_the_stored_preset(env):
    app, client, headers, models = env
    client.put("/api/presets/ok.gguf", json=FULL, headers=headers)
    presets = app.extensions["llamaman"].presets
    body = presets.launch_body(f"{models}/ok.gguf", {"ctx_size": 512, "name": "mine"})
    assert body == {**FULL, "ctx_size": 512, "name": "mine", "model_path": f"{models}/ok.gguf"}
    assert presets.launch_body("other.gguf", {"ctx_size": 512}) == {"ctx_size": 512, "model_path": "other.gguf"}
