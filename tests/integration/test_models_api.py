"""The model library routes through the real app (Flask test client), with generated GGUFs,
the real gemma model, and a real llama-server holding a model that a delete must not remove."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from llamaman.models.gguf_header import read_header
from llamaman.models.source_file import write_sidecar
from tests.appkit import make_app, setup_admin
from tests.modelkit import write_gguf, write_hf_dir, write_shards


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture
def api(tmp_path, models):
    """(app, client, csrf token) of a started app whose MODELS_DIR is `models`."""
    created = []

    def start(**env):
        app = make_app(tmp_path / f"app{len(created)}", **{"MODELS_DIR": str(models), **env})
        created.append(app)
        client = app.test_client()
        return app, client, setup_admin(client)

    yield start
    for app in created:
        app.extensions["llamaman"].stop()


def delete(client, token, path):
    return client.post("/api/models/delete", json={"path": path}, headers={"X-CSRF-Token": token})


def test_routes_need_management_auth(api):
    app, _client, _token = api()
    anonymous = app.test_client()
    for path in ("/api/models", "/api/model-layers?path=x.gguf", "/api/disk-space"):
        assert anonymous.get(path).status_code == 401, path
    assert anonymous.post("/api/models/delete", json={"path": "x.gguf"}).status_code in (401, 403)


def test_list_models(api, models):
    write_gguf(models / "b-Q8_0.gguf", file_type=7, layers=12)
    shards = write_shards(models / "split", "a-big", 2)
    write_sidecar(shards[0], "org/a-big-GGUF")
    write_gguf(models / "split" / "mmproj-F16.gguf", arch="clip")
    write_hf_dir(models / "hf-model")
    (models / "corrupt.gguf").write_bytes(b"GGUF\x03\0\0\0" + b"\xff" * 16)
    _app, client, _token = api()
    response = client.get("/api/models")
    assert response.status_code == 200 and response.mimetype == "application/json"
    listed = response.get_json()
    assert [m["name"] for m in listed] == ["a-big-00001-of-00002", "b-q8_0", "corrupt", "hf-model"]
    big, small, corrupt, hf = listed
    assert big["shards"] == 2 and big["repo_id"] == "org/a-big-GGUF"
    assert big["mmproj"] == str(models / "split" / "mmproj-F16.gguf")
    assert small["quant"] == "Q8_0" and small["layers"] == 12 and small["has_chat_template"] is True
    assert corrupt["unreadable"] is True and corrupt["reason"]
    assert hf["type"] == "hf" and hf["layers"] == 22
    assert all("chat_template" not in m for m in listed)


def test_model_layers(api, models, tmp_path):
    path = write_gguf(models / "m.gguf", layers=18)
    (models / "notes.txt").write_text("x")
    _app, client, _token = api()
    ok = client.get("/api/model-layers", query_string={"path": str(path)})
    assert ok.status_code == 200 and ok.get_json()["path"] == str(path) and ok.get_json()["layers"] == 18
    assert client.get("/api/model-layers?path=m.gguf").get_json()["layers"] == 18
    for bad in ({}, {"path": ""}, {"path": "../x.gguf"}, {"path": str(tmp_path / "m.gguf")},
                {"path": str(models)}, {"path": "notes.txt"}):
        response = client.get("/api/model-layers", query_string=bad)
        assert response.status_code == 400 and response.get_json()["error"], bad
    assert client.get("/api/model-layers?path=nope.gguf").status_code == 404


def test_model_metadata_route(api, models):
    write_gguf(models / "m.gguf", template="{{ hi }}")
    _app, client, _token = api()
    meta = client.get("/api/models/metadata?path=m.gguf").get_json()
    assert meta["chat_template"] == "{{ hi }}" and meta["metadata"]["general.architecture"] == "llama"


def test_disk_space(api, models):
    _app, client, _token = api()
    space = client.get("/api/disk-space").get_json()
    usage = shutil.disk_usage(models)
    assert {"total", "used", "free"} <= set(space) and space["total"] == usage.total
    assert 0 < space["free"] <= space["total"] and space["used"] <= space["total"]


def test_delete_route(api, models, tmp_path):
    shards = write_shards(models, "s", 3)
    victim = write_gguf(tmp_path / "victim.gguf")
    os.symlink(victim, models / "escape.gguf")
    (models / "notes.txt").write_text("x")
    _app, client, token = api()
    assert delete(client, token, "missing.gguf").status_code == 404
    for bad in (str(models), "../victim.gguf", str(victim), "escape.gguf", "notes.txt", None):
        response = delete(client, token, bad)
        assert response.status_code == 400 and response.get_json()["error"], bad
    assert client.post("/api/models/delete", data="x", headers={"X-CSRF-Token": token}).status_code == 400
    response = delete(client, token, str(shards[1]))
    assert response.status_code == 200 and response.get_json()["deleted"] == str(shards[0])
    assert not any(p.exists() for p in shards) and victim.exists()
    assert client.get("/api/models").get_json() == []


def test_real_gemma_metadata(api, models, model_path):
    header = read_header(model_path)
    arch = header.metadata["general.architecture"]
    _app, client, _token = api(MODELS_DIR=str(model_path.parent))  # read-only use: no deletes here
    [entry] = [m for m in client.get("/api/models").get_json() if m["path"] == str(model_path)]
    assert arch == "gemma3" and entry["architecture"] == "gemma3"
    assert entry["quant"] == "Q4_K_M" and entry["layers"] == 18 == header.metadata["gemma3.block_count"]
    assert entry["context_length"] == 32768 and entry["parameter_size"] == "270M"
    assert entry["has_chat_template"] is ("tokenizer.chat_template" in header.metadata)
    assert entry["size"] == model_path.stat().st_size and entry["unreadable"] is False
    layers = client.get("/api/model-layers", query_string={"path": str(model_path)}).get_json()
    assert layers["layers"] == 18


PORTS = {"PORT_RANGE_START": "25410", "PORT_RANGE_END": "25419",
         "INTERNAL_PORT_RANGE_START": "25510", "INTERNAL_PORT_RANGE_END": "25519"}


def test_delete_refused_while_a_real_instance_runs_it(api, models, model_path, llama_server_bin):
    copy = models / "gemma-copy.gguf"
    try:
        os.link(model_path, copy)
    except OSError:
        shutil.copyfile(model_path, copy)
    _app, client, token = api(LLAMAMAN_RUNTIME="process", LLAMA_SERVER_BIN=llama_server_bin, **PORTS)
    launched = client.post("/api/instances", headers={"X-CSRF-Token": token}, json={
        "model_path": str(copy), "ctx_size": 512, "threads": 2, "parallel": 1, "n_gpu_layers": 0})
    assert launched.status_code == 201, launched.get_data(as_text=True)
    instance = launched.get_json()["id"]
    refused = delete(client, token, str(copy))
    assert refused.status_code == 409 and "in use" in refused.get_json()["error"]
    assert copy.exists()
    stopped = client.delete(f"/api/instances/{instance}", headers={"X-CSRF-Token": token})
    assert stopped.status_code == 200, stopped.get_data(as_text=True)
    assert wait_status(client, instance, ("stopped", "failed"))
    response = delete(client, token, str(copy))
    assert response.status_code == 200 and not copy.exists()


def wait_status(client, instance: str, statuses: tuple[str, ...], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"/api/instances/{instance}").get_json()["status"] in statuses:
            return True
        time.sleep(0.1)
    return False
