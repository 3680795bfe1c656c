"""The download manager over its README API, against the local Hub server (real HTTP, real files)."""
from __future__ import annotations

import os

import pytest

from tests.hubkit import files_under, sha, start_download, wait_download
from tests.modelkit import write_gguf, write_shards

REPO = "acme/tiny-GGUF"


@pytest.fixture
def tiny(tmp_path):
    """A small real GGUF (bytes) written with the gguf package."""
    return write_gguf(tmp_path / "src" / "tiny-Q4_K_M.gguf", arch="llama", layers=6, context=4096,
                      tensors=4).read_bytes()


def test_single_file_lands_verified_and_appears_in_library(download_api, hub, tiny, tmp_path):
    client, headers, _svc = download_api
    repo = hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny, "README.md": b"# tiny"})
    job = wait_download(client, start_download(client, headers, repo_id=REPO, filename="tiny-Q4_K_M.gguf")["id"])
    assert job["status"] == "completed", job
    dest = tmp_path / "models" / "acme" / "tiny-GGUF" / "tiny-Q4_K_M.gguf"
    assert dest.read_bytes() == tiny
    assert job["files"] == [{"name": "tiny-Q4_K_M.gguf", "dest": str(dest), "size": len(tiny),
                             "sha256": sha(tiny), "done": True}]
    assert job["revision"] == repo.commit and job["downloaded_bytes"] == len(tiny)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tiny-Q4_K_M.gguf", "tiny-Q4_K_M.gguf.llamaman.json"]
    models = client.get("/api/models", headers=headers).get_json()
    entry = next(m for m in models if m["path"] == str(dest))
    assert entry["repo_id"] == REPO and entry["architecture"] == "llama" and entry["layers"] == 6
    assert entry["context_length"] == 4096


def test_shard_name_expands_to_all_shards(download_api, hub, tmp_path):
    client, headers, _svc = download_api
    shards = write_shards(tmp_path / "src", "big-Q8_0", 3)
    hub.add_repo(REPO, {p.name: p for p in shards} | {"other-Q2_K.gguf": shards[0].read_bytes()})
    job = wait_download(client, start_download(client, headers, repo_id=REPO, filename=shards[1].name)["id"])
    assert job["status"] == "completed", job
    folder = tmp_path / "models" / "acme" / "tiny-GGUF"
    assert sorted(f["name"] for f in job["files"]) == [p.name for p in shards]
    for shard in shards:
        assert (folder / shard.name).read_bytes() == shard.read_bytes()
    assert not (folder / "other-Q2_K.gguf").exists()
    listed = [m for m in client.get("/api/models").get_json() if m["path"].startswith(str(folder))]
    assert len(listed) == 1 and listed[0]["repo_id"] == REPO


def test_blank_filename_downloads_the_whole_repository(download_api, hub, tiny, tmp_path):
    client, headers, _svc = download_api
    content = {"tiny-Q4_K_M.gguf": tiny, "README.md": b"readme", "sub/dir/notes.txt": b"notes",
               ".gitattributes": b"*.gguf filter=lfs"}
    hub.add_repo(REPO, content)
    job = wait_download(client, start_download(client, headers, repo_id=REPO, filename="")["id"])
    assert job["status"] == "completed", job
    folder = tmp_path / "models" / "acme" / "tiny-GGUF"
    for name, data in content.items():
        assert (folder / name).read_bytes() == data
    assert job["filename"] is None and len(job["files"]) == len(content)


def test_pause_and_resume_continue_from_the_bytes_on_disk(download_api, hub, tmp_path):
    client, headers, _svc = download_api
    data = os.urandom(12 * 2**20)
    hub.add_repo(REPO, {"weights.bin": data})
    hub.rate = 4 * 2**20  # slow enough to pause in the middle
    job = start_download(client, headers, repo_id=REPO, filename="weights.bin")
    wait_download(client, job["id"], ("downloading",), until=lambda j: j["downloaded_bytes"] > 2**20)
    paused = client.post(f"/api/downloads/{job['id']}/pause", headers=headers).get_json()
    assert paused["status"] == "paused"
    part = tmp_path / "models" / "acme" / "tiny-GGUF" / "weights.bin.part"
    on_disk = part.stat().st_size
    assert 0 < on_disk < len(data)
    hub.rate = 0
    resumed = client.post(f"/api/downloads/{job['id']}/resume", headers=headers)
    assert resumed.status_code == 200
    done = wait_download(client, job["id"])
    assert done["status"] == "completed", done
    assert (part.parent / "weights.bin").read_bytes() == data and not part.exists()
    gets = hub.file_gets(f"{REPO}/weights.bin")
    assert [g["range"] for g in gets] == [None, f"bytes={on_disk}-"]
    assert gets[1]["sent"] == len(data) - on_disk  # the completed bytes were not fetched again


def test_cancel_removes_the_partial_file_and_nothing_else(download_api, hub, tiny, tmp_path):
    client, headers, _svc = download_api
    hub.add_repo(REPO, {"weights.bin": os.urandom(8 * 2**20)})
    hub.rate = 2**20
    folder = tmp_path / "models" / "acme" / "tiny-GGUF"
    folder.mkdir(parents=True)
    (folder / "keep.gguf").write_bytes(tiny)
    (tmp_path / "models" / "other.gguf").write_bytes(tiny)
    before = files_under(tmp_path / "models")
    job = start_download(client, headers, repo_id=REPO, filename="weights.bin")
    wait_download(client, job["id"], ("downloading",), until=lambda j: j["downloaded_bytes"] > 0)
    assert (folder / "weights.bin.part").exists()
    cancelled = client.delete(f"/api/downloads/{job['id']}", headers=headers).get_json()
    assert cancelled["status"] == "cancelled"
    assert files_under(tmp_path / "models") == before
    assert client.delete(f"/api/downloads/{job['id']}", headers=headers).status_code == 409


def test_dropped_connection_is_retried_from_the_bytes_on_disk(download_api, hub, tmp_path):
    client, headers, _svc = download_api
    client.post("/api/settings", json={"auto_retry_failed_downloads": True}, headers=headers)
    data = os.urandom(3 * 2**20)
    hub.add_repo(REPO, {"weights.bin": data})
    hub.drop_after(f"{REPO}/weights.bin", 2**20, times=2)
    job = wait_download(client, start_download(client, headers, repo_id=REPO, filename="weights.bin")["id"])
    assert job["status"] == "completed" and job["retries"] == 2, job
    assert (tmp_path / "models" / "acme" / "tiny-GGUF" / "weights.bin").read_bytes() == data
    gets = hub.file_gets(f"{REPO}/weights.bin")
    assert [g["range"] for g in gets] == [None, f"bytes={2**20}-", f"bytes={2 * 2**20}-"]
    assert hub.served_bytes(f"{REPO}/weights.bin") == len(data)
    log = "\n".join(client.get(f"/api/downloads/{job['id']}/logs").get_json()["lines"])
    assert "retry 1/3" in log and "retry 2/3" in log


def test_server_error_without_retry_fails_with_the_reason(download_api, hub, tiny, tmp_path):
    client, headers, _svc = download_api
    hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny})
    hub.fail(f"{REPO}/tiny-Q4_K_M.gguf", 503)
    job = wait_download(client, start_download(client, headers, repo_id=REPO, filename="tiny-Q4_K_M.gguf")["id"])
    assert job["status"] == "failed" and "503" in job["error"] and "tiny-Q4_K_M.gguf" in job["error"], job
    assert files_under(tmp_path / "models") == {}
    resumed = client.post(f"/api/downloads/{job['id']}/resume", headers=headers).get_json()
    assert resumed["status"] in ("queued", "downloading", "completed")
    assert wait_download(client, job["id"])["status"] == "completed"


def test_sha256_mismatch_fails_and_removes_the_file(download_api, hub, tiny, tmp_path):
    client, headers, _svc = download_api
    repo = hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny})
    repo.wrong_sha.add("tiny-Q4_K_M.gguf")
    job = wait_download(client, start_download(client, headers, repo_id=REPO, filename="tiny-Q4_K_M.gguf")["id"])
    assert job["status"] == "failed" and "sha256 mismatch" in job["error"], job
    assert sha(tiny) in job["error"] and files_under(tmp_path / "models") == {}


def test_a_filename_the_repo_does_not_have_fails_clearly(download_api, hub, tiny, tmp_path):
    client, headers, _svc = download_api
    hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny})
    job = wait_download(client, start_download(client, headers, repo_id=REPO, filename="nope-Q8_0.gguf")["id"])
    assert job["status"] == "failed" and "'nope-Q8_0.gguf' is not a file of acme/tiny-GGUF" in job["error"]
    missing = wait_download(client, start_download(client, headers, repo_id="acme/absent", filename="x.gguf")["id"])
    assert missing["status"] == "failed" and "404" in missing["error"]
    assert files_under(tmp_path / "models") == {}


@pytest.mark.parametrize("body", [
    {"repo_id": "x/."}, {"repo_id": "../a"}, {"repo_id": "/etc/passwd"}, {"repo_id": "a/b/c"},
    {"repo_id": "..%2F..%2Fetc"}, {"repo_id": "acme/..%2F.."}, {"repo_id": ""}, {"repo_id": 5},
    {"repo_id": REPO, "filename": "../escape.gguf"}, {"repo_id": REPO, "filename": "/etc/passwd"},
    {"repo_id": REPO, "filename": "a/../../b.gguf"}, {"repo_id": REPO, "filename": "a\\..\\b"},
    {"repo_id": REPO, "filename": "dir//x.gguf"}, {"repo_id": REPO, "speed_limit_mbps": -1},
    {"repo_id": REPO, "speed_limit_mbps": "fast"}, {"repo_id": REPO, "hf_token": "a b"},
    {"repo_id": REPO, "dest": "/tmp/x"},
])
def test_bad_input_is_refused_and_changes_nothing(download_api, hub, body, tmp_path):
    client, headers, _svc = download_api
    before = files_under(tmp_path)
    response = client.post("/api/downloads", json=body, headers=headers)
    assert response.status_code == 400 and response.get_json()["error"], response.get_data(as_text=True)
    assert client.get("/api/downloads").get_json() == []
    assert files_under(tmp_path) == before
    assert hub.requests == []


def test_private_repo_token_errors_are_clear_and_the_token_never_shows(download_api, hub, tiny, tmp_path):
    client, headers, _svc = download_api
    secret = "hf_PrivateTokenValue_0123456789abcd"
    hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny}, token=secret)
    anonymous = wait_download(client, start_download(client, headers, repo_id=REPO, filename="tiny-Q4_K_M.gguf")["id"])
    assert anonymous["status"] == "failed" and "401" in anonymous["error"] and "token" in anonymous["error"]
    wrong = wait_download(client, start_download(client, headers, repo_id=REPO, filename="tiny-Q4_K_M.gguf",
                                   hf_token="hf_wrong_token_000000000")["id"])
    assert wrong["status"] == "failed" and "403" in wrong["error"]
    good = start_download(client, headers, repo_id=REPO, filename="tiny-Q4_K_M.gguf", hf_token=secret)
    assert wait_download(client, good["id"])["status"] == "completed"
    assert any(r["authorization"] == f"Bearer {secret}" for r in hub.requests)
    seen = [client.get("/api/downloads").get_data(as_text=True),
            client.get(f"/api/downloads/{good['id']}").get_data(as_text=True),
            client.get(f"/api/downloads/{good['id']}/logs").get_data(as_text=True)]
    assert all(secret not in text for text in seen) and client.get("/api/downloads").get_json()[0]["has_token"]
    assert all(secret.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_stored_token_is_used_and_only_shown_masked(download_api, hub, tiny):
    client, headers, _svc = download_api
    secret = "hf_StoredTokenValue_abcdefghij9876"
    hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny}, token=secret)
    saved = client.post("/api/settings", json={"hf_token": secret}, headers=headers).get_json()
    assert saved["hf_token"] == "hf_…9876"
    assert secret not in client.get("/api/settings").get_data(as_text=True)
    again = client.post("/api/settings", json={"hf_token": saved["hf_token"]}, headers=headers)
    assert again.status_code == 200  # posting the masked value back keeps the stored token
    job = wait_download(client, start_download(client, headers, repo_id=REPO, filename="tiny-Q4_K_M.gguf")["id"])
    assert job["status"] == "completed", job
    log = client.get(f"/api/downloads/{job['id']}/logs").get_data(as_text=True)
    assert secret not in log


def test_remove_only_when_not_active(download_api, hub, tiny):
    client, headers, _svc = download_api
    hub.add_repo(REPO, {"weights.bin": os.urandom(4 * 2**20)})
    hub.rate = 2**20
    job = start_download(client, headers, repo_id=REPO, filename="weights.bin")
    assert client.delete(f"/api/downloads/{job['id']}/remove", headers=headers).status_code == 409
    client.delete(f"/api/downloads/{job['id']}", headers=headers)
    removed = client.delete(f"/api/downloads/{job['id']}/remove", headers=headers)
    assert removed.status_code == 200
    assert client.get(f"/api/downloads/{job['id']}").status_code == 404
    assert client.get("/api/downloads/no-such-job").status_code == 404


def test_downloads_need_an_admin(download_api, hub):
    client, _headers, _svc = download_api
    anonymous = client.application.test_client()
    assert anonymous.get("/api/downloads").status_code == 401
    assert anonymous.post("/api/downloads", json={"repo_id": REPO}).status_code == 401
    assert anonymous.get("/api/v1/backends/llama-cpp/models").status_code == 401
    assert anonymous.post("/api/v1/backends/llama-cpp/models/download", json={"repo": REPO}).status_code == 401
    assert anonymous.post("/api/pull", json={"model": REPO}).status_code == 401
    assert hub.requests == []
