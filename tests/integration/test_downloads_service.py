"""DownloadService's interface for other services (restore), token precedence, duplicates,
workers started on demand up to their limit, and a removal that a resume cannot slip into."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from llamaman.downloads import service as service_module
from llamaman.errors import Conflict, Invalid, NotFound
from tests.appkit import make_app, setup_admin
from tests.hubkit import files_under, wait_download
from tests.modelkit import write_shards

REPO = "acme/svc-GGUF"


def test_enqueue_places_a_file_at_an_exact_destination_with_its_shards(download_api, hub, tmp_path):
    client, _headers, svc = download_api
    shards = write_shards(tmp_path / "src", "m-Q8_0", 2)
    hub.add_repo(REPO, {p.name: p for p in shards})
    dest = tmp_path / "models" / "restored" / shards[0].name
    job = svc.downloads.enqueue(REPO, shards[0].name, dest_path=dest)
    assert {"id", "status", "repo_id", "filename"} <= job.keys() and job["status"] == "queued"
    assert wait_download(client, job["id"])["status"] == "completed"
    assert sorted(files_under(dest.parent)) == sorted([shards[0].name, shards[1].name,
                                                       shards[0].name + ".llamaman.json"])
    assert svc.downloads.get(job["id"])["dest_path"] == str(dest)
    assert [j["id"] for j in svc.downloads.list()] == [job["id"]]


@pytest.mark.parametrize("dest", ["/etc/x.gguf", "models", "models/../outside.gguf", "elsewhere/x.gguf"])
def test_enqueue_refuses_destinations_outside_models_dir(download_api, hub, dest, tmp_path):
    _client, _headers, svc = download_api
    (tmp_path / "models").mkdir(exist_ok=True)
    before = files_under(tmp_path)
    with pytest.raises(Invalid):
        svc.downloads.enqueue(REPO, "x.gguf", dest_path=Path(dest if dest.startswith("/") else tmp_path / dest))
    with pytest.raises(Invalid):
        svc.downloads.enqueue(REPO, None, dest_path=tmp_path / "models" / "x.gguf")
    assert svc.downloads.list() == [] and files_under(tmp_path) == before


def test_the_same_active_download_is_refused_once(download_api, hub):
    _client, _headers, svc = download_api
    hub.add_repo(REPO, {"weights.bin": os.urandom(4 * 2**20)})
    hub.rate = 2**20
    job = svc.downloads.enqueue(REPO, "weights.bin")
    with pytest.raises(Conflict) as refused:
        svc.downloads.enqueue(REPO, "weights.bin")
    assert refused.value.extra["job_id"] == job["id"]
    svc.downloads.cancel(job["id"])


def test_token_precedence_job_then_stored_then_environment(hub, tmp_path):
    secret = "hf_RightTokenForPrivateRepo_42424242"
    hub.add_repo(REPO, {"a.bin": b"a" * 1000, "b.bin": b"b" * 1000, "c.bin": b"c" * 1000}, token=secret)
    app = make_app(tmp_path / "app", MODELS_DIR=str(tmp_path / "models"), HF_ENDPOINT=hub.url, HF_TOKEN=secret)
    try:
        client = app.test_client()
        headers = {"X-CSRF-Token": setup_admin(client)}
        downloads = app.extensions["llamaman"].downloads
        from_env = wait_download(client, downloads.enqueue(REPO, "a.bin")["id"])
        assert from_env["status"] == "completed", from_env
        client.post("/api/settings", json={"hf_token": "hf_StoredButWrongToken_000000"}, headers=headers)
        stored_wins = wait_download(client, downloads.enqueue(REPO, "b.bin")["id"])
        assert stored_wins["status"] == "failed" and "403" in stored_wins["error"]
        job_wins = wait_download(client, downloads.enqueue(REPO, "c.bin", hf_token=secret)["id"])
        assert job_wins["status"] == "completed", job_wins
    finally:
        app.extensions["llamaman"].stop()


def test_workers_start_with_jobs_and_never_exceed_the_limit(hub, tmp_path):
    app = make_app(tmp_path / "app", MODELS_DIR=str(tmp_path / "models"), HF_ENDPOINT=hub.url)
    svc = app.extensions["llamaman"]
    try:
        assert svc.downloads.workers_started == 0, "an idle manager holds no download worker"
        files = {f"part{index}.bin": os.urandom(2**20) for index in range(svc.downloads.workers + 2)}
        hub.add_repo(REPO, files)
        hub.rate = 2**18  # slow enough that every worker is busy at once
        jobs = [svc.downloads.enqueue(REPO, name) for name in files]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and \
                sum(svc.downloads.get(job["id"])["status"] == "downloading" for job in jobs) < svc.downloads.workers:
            time.sleep(0.05)
        statuses = [svc.downloads.get(job["id"])["status"] for job in jobs]
        assert statuses.count("downloading") == svc.downloads.workers and statuses.count("queued") == 2
        assert svc.downloads.workers_started == svc.downloads.workers
        hub.rate = 0.0
        client = app.test_client()
        setup_admin(client)
        for job in jobs:
            assert wait_download(client, job["id"], timeout=30)["status"] == "completed"
    finally:
        svc.stop()
    assert svc.downloads.workers_started == 0


def test_a_resume_racing_a_removal_finds_no_job(download_api, hub, monkeypatch):
    client, _headers, svc = download_api
    hub.add_repo(REPO, {"weights.bin": b"w" * 1000})
    failed = wait_download(client, svc.downloads.enqueue(REPO, "absent.bin")["id"])
    assert failed["status"] == "failed"
    outcomes: list[str] = []
    real = service_module.remove_partials

    def resume_meanwhile(record, keep=()):  # the removal's file work is where a resume could slip in
        try:
            svc.downloads.resume(failed["id"])
            outcomes.append("resumed")
        except (NotFound, Conflict) as refused:
            outcomes.append(type(refused).__name__)
        return real(record, keep)

    monkeypatch.setattr(service_module, "remove_partials", resume_meanwhile)
    assert svc.downloads.remove(failed["id"])["removed"] is True
    assert outcomes == ["NotFound"], "a removed job was queued again"
    assert svc.downloads.list() == []
