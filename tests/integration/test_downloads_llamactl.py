"""llamactl's model API, Ollama's /api/pull and restart recovery, against the local Hub server."""
from __future__ import annotations

import json
import os

import pytest

from tests.appkit import ADMIN, csrf_of, make_app, setup_admin
from tests.hubkit import files_under, start_download, wait_download
from tests.modelkit import write_gguf, write_shards

REPO = "acme/Vision-7B-GGUF"
MODELS = "/api/v1/backends/llama-cpp/models"


@pytest.fixture
def vision_repo(hub, tmp_path):
    """A repo with two quantizations (one split in two), two projectors, a preset and a README."""
    src = tmp_path / "src"
    shards = write_shards(src, "Vision-7B-Q8_0", 2)
    files = {p.name: p for p in shards}
    files["Vision-7B-Q4_K_M.gguf"] = write_gguf(src / "q4.gguf", arch="llama", layers=5)
    files["mmproj-Vision-7B-f16.gguf"] = write_gguf(src / "mm16.gguf", arch="clip", layers=None)
    files["mmproj-Vision-7B-Q8_0.gguf"] = write_gguf(src / "mm8.gguf", arch="clip", layers=None)
    files["preset.ini"] = b"[*]\ntemp = 0.6\n"
    files["README.md"] = b"# vision"
    hub.add_repo(REPO, files)
    return files


def read(value) -> bytes:
    return value if isinstance(value, bytes) else value.read_bytes()


def test_llamactl_download_list_and_delete(download_api, vision_repo, tmp_path):
    client, headers, _svc = download_api
    response = client.post(f"{MODELS}/download", json={"repo": f"{REPO}:q8_0"}, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["repo"] == REPO and body["tag"] == "q8_0" and len(body["job_id"]) == 16
    assert wait_download(client, body["job_id"])["status"] == "completed"
    cache = tmp_path / "models" / "llamactl-cache"
    wanted = ["Vision-7B-Q8_0-00001-of-00002.gguf", "Vision-7B-Q8_0-00002-of-00002.gguf",
              "mmproj-Vision-7B-Q8_0.gguf", "preset.ini"]
    for name in wanted:
        assert (cache / f"acme_Vision-7B-GGUF_{name}").read_bytes() == read(vision_repo[name])
    listed = client.get(MODELS, headers=headers).get_json()
    assert [(m["repo"], m["tag"], m["file_count"]) for m in listed] == [(REPO, "q8_0", 4)]
    assert sorted(f["name"] for f in listed[0]["files"]) == sorted(f"acme_Vision-7B-GGUF_{n}" for n in wanted)
    assert listed[0]["total_size"] == sum(len(read(vision_repo[n])) for n in wanted)
    library = client.get("/api/models").get_json()
    first = str(cache / f"acme_Vision-7B-GGUF_{wanted[0]}")
    assert any(m["path"] == first and m["repo_id"] == REPO for m in library)
    deleted = client.delete(f"{MODELS}?repo={REPO}&tag=Q8_0", headers=headers)
    assert deleted.status_code == 200 and len(deleted.get_json()["deleted"]) == 4
    assert client.get(MODELS, headers=headers).get_json() == []
    assert [p for p in cache.iterdir() if not p.name.startswith(".")] == []
    assert client.delete(f"{MODELS}?repo={REPO}", headers=headers).status_code == 404


def test_llamactl_latest_takes_q4_k_m_and_the_f16_projector(download_api, vision_repo, tmp_path):
    client, headers, _svc = download_api
    body = client.post(f"{MODELS}/download", json={"repo": REPO}, headers=headers).get_json()
    assert body["tag"] == "latest"
    job = wait_download(client, body["job_id"])
    assert [f["name"] for f in job["files"]] == ["Vision-7B-Q4_K_M.gguf", "mmproj-Vision-7B-f16.gguf", "preset.ini"]


def test_llamactl_cache_dir_comes_from_the_environment(hub, vision_repo, tmp_path):
    app = make_app(tmp_path / "app", MODELS_DIR=str(tmp_path / "models"), HF_ENDPOINT=hub.url,
                   LLAMA_CACHE=str(tmp_path / "llama-cache"),
                   LLAMACTL_LLAMACPP_CACHE_DIR=str(tmp_path / "models" / "ctl"))
    try:
        client = app.test_client()
        headers = {"X-CSRF-Token": setup_admin(client)}
        body = client.post(f"{MODELS}/download", json={"repo": f"{REPO}:Q4_K_M"}, headers=headers).get_json()
        assert wait_download(client, body["job_id"])["status"] == "completed"
        assert (tmp_path / "models" / "ctl" / "acme_Vision-7B-GGUF_Vision-7B-Q4_K_M.gguf").is_file()
        assert not (tmp_path / "llama-cache").exists()
    finally:
        app.extensions["llamaman"].stop()


@pytest.mark.parametrize("repo", ["../x:Q4_K_M", "acme/m:../../x", "", "acme/m/extra:Q4"])
def test_llamactl_bad_references_are_refused(download_api, repo, tmp_path):
    client, headers, _svc = download_api
    response = client.post(f"{MODELS}/download", json={"repo": repo}, headers=headers)
    assert response.status_code == 400 and response.get_json()["error"]
    assert client.delete(f"{MODELS}?repo=..%2F..%2Fetc", headers=headers).status_code == 400
    assert files_under(tmp_path / "models") == {}


def test_llamactl_unknown_tag_fails_with_the_available_files(download_api, vision_repo):
    client, headers, _svc = download_api
    body = client.post(f"{MODELS}/download", json={"repo": f"{REPO}:Q3_K_S"}, headers=headers).get_json()
    job = wait_download(client, body["job_id"])
    assert job["status"] == "failed" and "no GGUF file for tag 'Q3_K_S'" in job["error"]
    assert "Vision-7B-Q4_K_M.gguf" in job["error"]


def test_ollama_pull_queues_a_download_and_reports_success(download_api, vision_repo, tmp_path):
    client, headers, _svc = download_api
    done = client.post("/api/pull", json={"model": f"{REPO}:Q4_K_M", "stream": False}, headers=headers)
    assert done.status_code == 200 and done.get_json() == {"status": "success"}
    assert (tmp_path / "models" / "acme" / "Vision-7B-GGUF" / "Vision-7B-Q4_K_M.gguf").is_file()
    streamed = client.post("/api/pull", json={"model": f"{REPO}:Q8_0"}, headers=headers)
    lines = [json.loads(line) for line in streamed.get_data(as_text=True).splitlines()]
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    missing = client.post("/api/pull", json={"model": f"{REPO}:Q3_K_S", "stream": False}, headers=headers)
    assert missing.status_code == 500 and "no GGUF file for tag" in missing.get_json()["error"]


def test_interrupted_downloads_resume_after_a_restart(hub, tmp_path):
    data = os.urandom(8 * 2**20)
    hub.add_repo(REPO, {"weights.bin": data})
    hub.rate = 2 * 2**20
    env = {"MODELS_DIR": str(tmp_path / "models"), "HF_ENDPOINT": hub.url}
    first = make_app(tmp_path / "app", **env)
    client = first.test_client()
    headers = {"X-CSRF-Token": setup_admin(client)}
    job = start_download(client, headers, repo_id=REPO, filename="weights.bin")
    wait_download(client, job["id"], ("downloading",), until=lambda j: j["downloaded_bytes"] > 2**20)
    first.extensions["llamaman"].stop()
    part = tmp_path / "models" / "acme" / "Vision-7B-GGUF" / "weights.bin.part"
    on_disk = part.stat().st_size
    hub.rate = 0
    second = make_app(tmp_path / "app", **env)
    try:
        client = second.test_client()
        client.post("/login", data={**ADMIN, "csrf_token": csrf_of(client)})
        done = wait_download(client, job["id"])
        assert done["status"] == "completed", done
        assert (part.parent / "weights.bin").read_bytes() == data
        gets = hub.file_gets(f"{REPO}/weights.bin")
        assert [g["range"] for g in gets] == [None, f"bytes={on_disk}-"]
        log = client.get(f"/api/downloads/{job['id']}/logs").get_json()["lines"]
        assert any("interrupted by shutdown" in line for line in log)
        assert any(f"resuming at byte {on_disk}" in line for line in log)
    finally:
        second.extensions["llamaman"].stop()
