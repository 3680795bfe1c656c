"""Model backup export and restore through the real app: contents, merge rules, bad documents."""
import json

import pytest

from llamaman.models.source_file import write_sidecar
from tests.appkit import make_app, setup_admin
from tests.modelkit import write_gguf


@pytest.fixture
def env(tmp_path):
    models = tmp_path / "models"
    (models / "org" / "repo").mkdir(parents=True)
    write_gguf(models / "plain.gguf")
    write_gguf(models / "org" / "repo" / "known-Q4_K_M.gguf")
    write_sidecar(models / "org" / "repo" / "known-Q4_K_M.gguf", "org/repo", filename="known-Q4_K_M.gguf",
                  revision="abc123")
    app = make_app(tmp_path, MODELS_DIR=str(models))
    client = app.test_client()
    headers = {"X-CSRF-Token": setup_admin(client)}
    app.extensions["llamaman"].library.refresh()
    yield client, headers, models
    app.extensions["llamaman"].stop()


def put_preset(client, headers, path, body):
    response = client.put(f"/api/presets/{path}", json=body, headers=headers)
    assert response.status_code == 200, response.get_json()


def by_path(document):
    return {item["path"]: item for item in document["models"]}


def test_export_lists_models_presets_and_sources(env):
    client, headers, _models = env
    put_preset(client, headers, "plain.gguf", {"ctx_size": 4096, "max_concurrent": 2})
    put_preset(client, headers, "gone/missing.gguf", {"threads": 3})
    response = client.get("/api/models/export")
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="llamaman-models-') and disposition.endswith('.json"')
    document = response.get_json()
    assert document["format"] == "llamaman-models" and document["version"] == 1
    items = by_path(document)
    assert set(items) == {"plain.gguf", "org/repo/known-Q4_K_M.gguf", "gone/missing.gguf"}
    assert items["plain.gguf"]["preset"] == {"ctx_size": 4096, "max_concurrent": 2}
    assert items["plain.gguf"]["repo_id"] is None and items["plain.gguf"]["present"] is True
    known = items["org/repo/known-Q4_K_M.gguf"]
    assert (known["repo_id"], known["filename"], known["revision"]) == ("org/repo", "known-Q4_K_M.gguf", "abc123")
    assert known["preset"] is None and known["quant"] == "Q4_K_M"
    assert items["gone/missing.gguf"] == {"path": "gone/missing.gguf", "present": False, "repo_id": None,
                                          "filename": None, "revision": None, "sha256": None,
                                          "preset": {"threads": 3}}


def test_restore_merges_without_overwriting_and_reports_the_rest(env):
    client, headers, _models = env
    put_preset(client, headers, "plain.gguf", {"ctx_size": 4096})
    document = {"format": "llamaman-models", "version": 1, "models": [
        {"path": "plain.gguf", "preset": {"ctx_size": 1024, "threads": 6}},
        {"path": "org/repo/known-Q4_K_M.gguf", "repo_id": "org/repo", "filename": "known-Q4_K_M.gguf",
         "preset": {"max_concurrent": 3}},
        {"path": "lost.gguf", "preset": {"threads": 2}},
    ]}
    response = client.post("/api/models/restore", json=document, headers=headers)
    assert response.status_code == 200, response.get_json()
    report = response.get_json()
    assert report["merged"] == [{"path": "plain.gguf", "preset": True},
                                {"path": "org/repo/known-Q4_K_M.gguf", "preset": True}]
    assert report["unrestorable"] == [{"path": "lost.gguf", "reason": "no known HuggingFace source"}]
    assert report["queued"] == [] and report["failed"] == []
    assert client.get("/api/presets/plain.gguf").get_json()["ctx_size"] == 4096  # existing value wins
    assert client.get("/api/presets/plain.gguf").get_json()["threads"] == 6
    assert client.get("/api/presets/org/repo/known-Q4_K_M.gguf").get_json()["max_concurrent"] == 3
    assert client.get("/api/presets/lost.gguf").status_code == 404


def test_export_then_restore_is_a_fixed_point(env):
    client, headers, _models = env
    put_preset(client, headers, "plain.gguf", {"ctx_size": 4096, "idle_timeout_min": 5.0})
    before = client.get("/api/presets").get_json()
    document = client.get("/api/models/export").get_json()
    assert client.post("/api/models/restore", json=document, headers=headers).status_code == 200
    assert client.get("/api/presets").get_json() == before


@pytest.mark.parametrize("document, message", [
    ({"models": []}, "not a model backup"),
    ({"format": "llamaman-models", "models": {}}, "'models' must be a list"),
    ({"format": "llamaman-models", "models": ["x"]}, "models[1] must be an object"),
    ({"format": "llamaman-models", "models": [{"path": "/etc/passwd.gguf"}]}, "relative to MODELS_DIR"),
    ({"format": "llamaman-models", "models": [{"path": "../outside.gguf"}]}, "inside MODELS_DIR"),
    ({"format": "llamaman-models", "models": [{"path": "x.gguf", "repo_id": "../a"}]}, "'org/name'"),
    ({"format": "llamaman-models", "models": [{"path": "x.gguf", "repo_id": "a/b", "filename": "../x.gguf"}]},
     "inside the repository"),
    ({"format": "llamaman-models", "models": [{"path": "x.gguf", "preset": {"ctx_size": "big"}}]}, "ctx_size"),
])
def test_bad_documents_are_refused_and_change_nothing(env, document, message):
    client, headers, _models = env
    put_preset(client, headers, "plain.gguf", {"ctx_size": 4096})
    before = client.get("/api/presets").get_json()
    # a valid first entry must not be applied when a later one is bad
    if isinstance(document.get("models"), list):
        document["models"].insert(0, {"path": "plain.gguf", "preset": {"threads": 9}})
    response = client.post("/api/models/restore", json=document, headers=headers)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert client.get("/api/presets").get_json() == before


def test_restore_needs_admin_and_csrf(env):
    client, _headers, _models = env
    document = {"format": "llamaman-models", "version": 1, "models": []}
    assert client.post("/api/models/restore", data=json.dumps(document),
                       content_type="application/json").status_code in (400, 403)
    client.get("/logout")
    assert client.get("/api/models/export").status_code == 401
