"""Backup round trip between two real apps: export from one data dir, restore into an empty one
fed by the local Hub server; the models arrive at the same paths and the presets match."""
from __future__ import annotations

import pytest

from tests.e2e.appproc import admin_session, start_app
from tests.hubkit import files_under, sha, wait_download
from tests.modelkit import write_gguf, write_shards

pytestmark = pytest.mark.timeout(180)
ALPHA, BETA = "acme/alpha-GGUF", "acme/beta-GGUF"


def start(tmp_path, name, hub):
    models = tmp_path / name / "models"
    models.mkdir(parents=True)
    app = start_app(tmp_path / name, MODELS_DIR=str(models), HF_ENDPOINT=hub.url)
    return app, admin_session(app), models


def download(app, session, **body) -> dict:
    response = session.post(app.url("/api/downloads"), json=body)
    assert response.status_code == 201, response.text
    return wait_download(session, response.json()["id"], base=app.url("").rstrip("/"))


def put_preset(app, session, path, body):
    response = session.put(app.url(f"/api/presets/{path}"), json=body)
    assert response.status_code == 200, response.text


def presets_by_relative_path(app, session, models) -> dict:
    return {p["model_path"].removeprefix(f"{models}/"): {k: v for k, v in p.items() if k != "model_path"}
            for p in session.get(app.url("/api/presets")).json().values()}


def test_export_restore_round_trip_through_the_hub(tmp_path, hub):
    alpha = write_gguf(tmp_path / "alpha-Q4_K_M.gguf", arch="llama", layers=3).read_bytes()
    shards = {p.name: p.read_bytes() for p in write_shards(tmp_path / "beta", "beta-Q8_0", 2)}
    hub.add_repo(ALPHA, {"alpha-Q4_K_M.gguf": alpha, "README.md": b"# alpha"})
    hub.add_repo(BETA, shards)

    source, src_session, src_models = start(tmp_path, "source", hub)
    target = None
    try:
        assert download(source, src_session, repo_id=ALPHA, filename="alpha-Q4_K_M.gguf")["status"] == "completed"
        first_shard = min(shards)
        assert download(source, src_session, repo_id=BETA, filename=first_shard)["status"] == "completed"
        write_gguf(src_models / "local-only.gguf")
        put_preset(source, src_session, "acme/alpha-GGUF/alpha-Q4_K_M.gguf", {"ctx_size": 4096, "threads": 3})
        put_preset(source, src_session, f"acme/beta-GGUF/{first_shard}", {"max_concurrent": 2})
        put_preset(source, src_session, "local-only.gguf", {"ctx_size": 1024})
        exported = src_session.get(source.url("/api/models/export"))
        assert exported.status_code == 200
        document = exported.json()
        expected_presets = presets_by_relative_path(source, src_session, src_models)

        target, session, models = start(tmp_path, "target", hub)
        report = session.post(target.url("/api/models/restore"), json=document)
        assert report.status_code == 200, report.text
        report = report.json()
        assert sorted(q["path"] for q in report["queued"]) == [
            "acme/alpha-GGUF/alpha-Q4_K_M.gguf", f"acme/beta-GGUF/{first_shard}"]
        assert report["unrestorable"] == [{"path": "local-only.gguf", "reason": "no known HuggingFace source"}]
        for queued in report["queued"]:
            job = wait_download(session, queued["job_id"], base=target.url("").rstrip("/"))
            assert job["status"] == "completed", job

        arrived = files_under(models)
        assert arrived["acme/alpha-GGUF/alpha-Q4_K_M.gguf"] == sha(alpha)
        for name, data in shards.items():
            assert arrived[f"acme/beta-GGUF/{name}"] == sha(data)
        restored = presets_by_relative_path(target, session, models)
        assert restored == {k: v for k, v in expected_presets.items() if k != "local-only.gguf"}
        listed = {m["path"].removeprefix(f"{models}/"): m for m in session.get(target.url("/api/models")).json()}
        assert listed["acme/alpha-GGUF/alpha-Q4_K_M.gguf"]["repo_id"] == ALPHA
        assert listed[f"acme/beta-GGUF/{first_shard}"]["shards"] == 2
    finally:
        source.kill()
        if target is not None:
            target.kill()
