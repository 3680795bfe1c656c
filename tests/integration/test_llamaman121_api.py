"""LlamaMan 1.2.1's REST answers that scripts read, served beside ours (README "Coming from
LlamaMan 1.2.1": the route table). Each field and status here was observed on a running 1.2.1."""
from __future__ import annotations

import re
import runpy
import shutil
from pathlib import Path

import pytest

from tests.appkit import create_key, make_app, setup_admin
from tests.hubkit import start_download, wait_download
from tests.modelkit import write_gguf

REPO = "acme/tiny-GGUF"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def api(tmp_path):
    """(client, csrf headers, models dir) of a started app on the process runtime."""
    models = tmp_path / "models"
    write_gguf(models / "tiny-Q4_K_M.gguf", arch="llama", layers=6, context=4096, tensors=2,
               extra={"llama.embedding_length": 64, "llama.feed_forward_length": 128,
                      "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2})
    app = make_app(tmp_path, MODELS_DIR=str(models), LLAMAMAN_RUNTIME="process",
                   LLAMA_SERVER_BIN="/nonexistent/llama-server",
                   PORT_RANGE_START="24200", PORT_RANGE_END="24209",
                   INTERNAL_PORT_RANGE_START="24300", INTERNAL_PORT_RANGE_END="24309")
    client = app.test_client()
    headers = {"X-CSRF-Token": setup_admin(client)}
    yield client, headers, models
    app.extensions["llamaman"].stop()


# --- API keys ------------------------------------------------------------------------------

def test_key_created_with_a_name_only_is_an_admin_key(api):
    client, headers, _models = api
    created = client.post("/api/api-keys", json={"name": "scripts"}, headers=headers)
    assert created.status_code == 201
    body = created.get_json()
    assert body["scope"] == "admin" and body["name"] == "scripts" and body["key"].startswith("llm-")
    bearer = {"Authorization": f"Bearer {body['key']}"}
    assert client.application.test_client().get("/api/instances", headers=bearer).status_code == 200
    picked = create_key(client, headers["X-CSRF-Token"], scope="inference")  # as the UI sends it
    assert picked["scope"] == "inference"


def test_key_times_are_iso_with_milliseconds(api):
    client, headers, _models = api
    created = create_key(client, headers["X-CSRF-Token"], scope="admin")
    [listed] = client.get("/api/api-keys").get_json()
    assert ISO_MS.match(created["created_at"]) and listed["created_at"] == created["created_at"]


# --- HuggingFace tokens ----------------------------------------------------------------------

def test_hf_token_crud_shows_only_a_preview(api):
    client, headers, _models = api
    secret = "hf_abcdefghijklmnop0123"
    assert client.get("/api/settings/huggingface-tokens").get_json() == []
    added = client.post("/api/settings/huggingface-tokens", json={"name": "main", "token": secret},
                        headers=headers)
    assert added.status_code == 201
    token = added.get_json()
    assert set(token) == {"id", "name", "preview", "created_at"}
    assert token["name"] == "main" and token["preview"] == "hf_abc...0123"
    assert isinstance(token["created_at"], int)
    assert client.get("/api/settings/huggingface-tokens").get_json() == [token]
    assert client.get("/api/settings").get_json()["huggingface_tokens"] == [token]
    for path in ("/api/settings/huggingface-tokens", "/api/settings"):
        assert secret not in client.get(path).get_data(as_text=True)
    unnamed = client.post("/api/settings/huggingface-tokens", json={"token": "hf_zzzzzzzzzzzzzzzz"},
                          headers=headers).get_json()
    assert unnamed["name"] == "Untitled"
    assert client.delete(f"/api/settings/huggingface-tokens/{token['id']}", headers=headers).get_json() == {
        "ok": True}
    assert client.get("/api/settings/huggingface-tokens").get_json() == [unnamed]
    assert client.delete(f"/api/settings/huggingface-tokens/{token['id']}", headers=headers).status_code == 404


@pytest.mark.parametrize("body", [{"name": "x"}, {"token": ""}, {"token": "hf_a b"}, {"token": 5}, [1],
                                  {"token": "hf_ok_token_value", "name": "n" * 129}])
def test_bad_hf_token_is_400_and_nothing_is_saved(api, body):
    client, headers, _models = api
    response = client.post("/api/settings/huggingface-tokens", json=body, headers=headers)
    assert response.status_code == 400 and "error" in response.get_json()
    assert client.get("/api/settings/huggingface-tokens").get_json() == []


def test_hf_tokens_need_an_admin(api):
    client, headers, _models = api
    inference = create_key(client, headers["X-CSRF-Token"], scope="inference")["key"]
    other = client.application.test_client()
    bearer = {"Authorization": f"Bearer {inference}"}
    assert other.get("/api/settings/huggingface-tokens", headers=bearer).status_code == 403
    assert other.post("/api/settings/huggingface-tokens", json={"token": "hf_xxxxxxxxxxxx"},
                      headers=bearer).status_code == 403
    assert client.post("/api/settings/huggingface-tokens", json={"token": "hf_xxxxxxxxxxxx"}).status_code == 403


def test_download_uses_the_saved_token_named_by_hf_token_id(download_api, hub, tmp_path):
    client, headers, _svc = download_api
    secret = "hf_SavedTokenValue_0123456789abcd"
    tiny = write_gguf(tmp_path / "src" / "tiny-Q4_K_M.gguf", layers=2).read_bytes()
    hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny}, token=secret)
    saved = client.post("/api/settings/huggingface-tokens", json={"name": "main", "token": secret},
                        headers=headers).get_json()
    job = start_download(client, headers, repo_id=REPO, filename="tiny-Q4_K_M.gguf", hf_token_id=saved["id"])
    assert job["hf_token_id"] == saved["id"] and job["has_token"] is True
    done = wait_download(client, job["id"])
    assert done["status"] == "completed", done
    assert any(r["authorization"] == f"Bearer {secret}" for r in hub.requests)
    assert secret not in client.get(f"/api/downloads/{job['id']}/logs").get_data(as_text=True)


@pytest.mark.parametrize("extra", [{"hf_token_id": "nope"}, {"hf_token_id": 5},
                                   {"hf_token_id": "{id}", "hf_token": "hf_other_token_value"}])
def test_bad_hf_token_id_is_400_and_queues_nothing(download_api, extra):
    client, headers, _svc = download_api
    saved = client.post("/api/settings/huggingface-tokens", json={"token": "hf_xxxxxxxxxxxxxxxx"},
                        headers=headers).get_json()
    extra = {k: v.format(id=saved["id"]) if isinstance(v, str) else v for k, v in extra.items()}
    response = client.post("/api/downloads", json={"repo_id": REPO, "filename": "a.gguf", **extra},
                           headers=headers)
    assert response.status_code == 400 and response.get_json()["field"] == "hf_token_id"
    assert client.get("/api/downloads").get_json() == []


def test_download_shows_log_file_and_remove_answers_status(download_api, hub, tmp_path):
    client, headers, svc = download_api
    hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": write_gguf(tmp_path / "src" / "t.gguf", layers=2).read_bytes()})
    job = wait_download(client, start_download(client, headers, repo_id=REPO, filename="tiny-Q4_K_M.gguf")["id"])
    log_file = job["log_file"]
    assert log_file == str(svc.config.logs_dir / "downloads" / f"{job['id']}.log")
    with open(log_file) as handle:
        assert "tiny-Q4_K_M.gguf" in handle.read()
    assert client.get("/api/downloads").get_json()[0]["log_file"] == log_file
    removed = client.delete(f"/api/downloads/{job['id']}/remove", headers=headers).get_json()
    assert removed["status"] == "removed"


# --- models -----------------------------------------------------------------------------------

def test_models_show_size_bytes_and_display(api, tmp_path):
    client, _headers, models = api
    big = models / "big-Q8_0.gguf"
    shutil.copy(models / "tiny-Q4_K_M.gguf", big)
    with open(big, "ab") as handle:
        handle.truncate(int(1.5 * 1024**3))  # sparse: 1.5 GiB on paper
    client.application.extensions["llamaman"].library.refresh()
    listed = {m["name"]: m for m in client.get("/api/models").get_json()}
    tiny = listed["tiny-q4_k_m"]
    assert tiny["size_bytes"] == tiny["size"] == (models / "tiny-Q4_K_M.gguf").stat().st_size
    assert tiny["size_display"] == f"{tiny['size'] / 1024**2:.0f} MB"
    assert listed["big-q8_0"]["size_display"] == "1.5 GB"


def test_model_layers_show_the_header_fields(api):
    client, _headers, models = api
    path = str(models / "tiny-Q4_K_M.gguf")
    body = client.get(f"/api/model-layers?path={path}").get_json()
    assert body == {"path": path, "layers": 6, "block_count": 6, "embedding_length": 64,
                    "feed_forward_length": 128, "head_count": 4, "head_count_kv": 2, "vocab_size": None,
                    "quant": "Q4_K_M"}
    assert client.get("/api/model-layers").status_code == 400


def test_disk_space_shows_gib_beside_bytes(api):
    client, _headers, _models = api
    body = client.get("/api/disk-space").get_json()
    for part in ("total", "used", "free"):
        assert isinstance(body[part], int) and body[f"{part}_gb"] == round(body[part] / 1024**3, 1)


# --- presets ----------------------------------------------------------------------------------

def test_presets_are_keyed_by_model_path(api):
    client, headers, models = api
    path = str(models / "tiny-Q4_K_M.gguf")
    saved = client.put(f"/api/presets{path}", json={"ctx_size": 2048, "favorite": True, "spec_enabled": True},
                       headers=headers)
    assert saved.status_code == 200 and saved.get_json()["status"] == "saved"
    presets = client.get("/api/presets").get_json()
    assert list(presets) == [path]
    assert presets[path]["ctx_size"] == 2048 and presets[path]["spec_decoding"] is True
    assert client.delete(f"/api/presets{path}", headers=headers).get_json()["status"] == "deleted"
    assert client.get("/api/presets").get_json() == {}


# --- instances --------------------------------------------------------------------------------

def test_instance_shows_upstream_fields_and_restart_answers_201(api, tmp_path):
    client, headers, models = api
    launched = client.post("/api/instances", headers=headers, json={
        "model_path": str(models / "tiny-Q4_K_M.gguf"), "ctx_size": 1024, "n_gpu_layers": 0,
        "embedding": False, "gpu_devices": "", "max_concurrent": 2})
    assert launched.status_code == 201, launched.get_data(as_text=True)
    inst = launched.get_json()
    check_upstream_fields(inst, tmp_path)
    assert inst["config"]["ctx_size"] == 1024 and inst["config"]["max_concurrent"] == 2
    assert inst["config"]["embedding_model"] is False and inst["config"]["gpu_devices"] is None
    assert inst["container_id"] is None and inst["container_name"] is None  # process runtime
    check_upstream_fields(client.get(f"/api/instances/{inst['id']}").get_json(), tmp_path)
    check_upstream_fields(client.get("/api/instances").get_json()[0], tmp_path)
    client.delete(f"/api/instances/{inst['id']}", headers=headers)
    with open(inst["log_file"]) as handle:  # the file /api/instances/<id>/logs serves
        assert handle.read().splitlines()[-1] in client.get(f"/api/instances/{inst['id']}/logs").get_json()["lines"]
    restarted = client.post(f"/api/instances/{inst['id']}/restart", headers=headers)
    assert restarted.status_code == 201 and restarted.get_json()["id"] == inst["id"]
    client.delete(f"/api/instances/{inst['id']}", headers=headers)
    removed = client.delete(f"/api/instances/{inst['id']}/remove", headers=headers)
    assert removed.status_code == 200 and removed.get_json()["status"] == "removed"
    assert client.post("/api/instances/nope/restart", headers=headers).status_code == 404


def check_upstream_fields(inst: dict, tmp_path) -> None:
    assert inst["log_file"] == str(tmp_path / "data" / "logs" / "instances" / f"{inst['id']}.log")
    assert set(inst["stats"]) == {"crash_count", "last_tokens_per_sec", "last_ttft_ms", "model_load_time_s",
                                  "total_requests"}
    assert inst["stats"]["crash_count"] == inst["restarts"]
    assert {"n_gpu_layers", "ctx_size", "threads", "memory_limit", "parallel", "extra_args", "gpu_devices",
            "idle_timeout_min", "max_concurrent", "max_queue_depth", "share_queue", "embedding_model",
            "spec_enabled", "spec_draft_n_max", "auto_restart_on_crash", "proxy_sampling_override_enabled",
            "proxy_sampling_temperature", "proxy_sampling_top_k", "proxy_sampling_top_p",
            "proxy_sampling_presence_penalty", "proxy_sampling_repeat_penalty"} <= set(inst["config"])
    assert {"container_id", "container_name"} <= set(inst)


# --- server configuration ---------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    (None, ["127.0.0.1:5000", "127.0.0.1:42069"]),
    ("0.0.0.0:5100, 0.0.0.0:42169", ["0.0.0.0:5100", "0.0.0.0:42169"]),
])
def test_gunicorn_bind_replaces_the_addresses(tmp_path, monkeypatch, given, expected):
    """gunicorn.conf.py as gunicorn (and `python app.py`) loads it."""
    for name, value in {"LLAMAMAN_NODE_NAME": "srv1", "DATA_DIR": str(tmp_path / "data"),
                        "MODELS_DIR": str(tmp_path / "models"), "LLAMAMAN_BIND": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    if given is None:
        monkeypatch.delenv("GUNICORN_BIND", raising=False)
    else:
        monkeypatch.setenv("GUNICORN_BIND", given)
    settings = runpy.run_path(str(Path(__file__).parents[2] / "gunicorn.conf.py"))
    assert settings["bind"] == expected and settings["workers"] == 1


def test_model_delete_answers_status(api):
    client, headers, models = api
    path = str(models / "tiny-Q4_K_M.gguf")
    response = client.post("/api/models/delete", json={"path": path}, headers=headers)
    assert response.status_code == 200 and response.get_json()["status"] == "deleted"
    assert not (models / "tiny-Q4_K_M.gguf").exists()
