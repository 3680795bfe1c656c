"""Cleanup jobs on every storage backend (JSON, SQLite, MariaDB), driven by an injected clock.

Old finished downloads and old stopped/failed instances go; active, recent and other nodes'
records, downloaded model files and kept records' logs stay. Settings bad input is refused.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from llamaman.cleanup.service import AGE_SWEEP_S
from llamaman.downloads.jobs import new_job
from llamaman.storage import open_storage
from tests.appkit import make_app

pytestmark = pytest.mark.timeout(120)
HOUR = 3600.0


class Clock:
    """An epoch clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["json", "sqlite", "mariadb"])
def backend(request, tmp_path) -> dict[str, str]:
    """App environment for one backend; a node of its own keeps the shared MariaDB apart."""
    env = {"LLAMAMAN_NODE_NAME": f"cleanup-{uuid.uuid4().hex[:8]}", "LLAMAMAN_RUNTIME": "process",
           "LLAMA_SERVER_BIN": "/nonexistent"}
    if request.param == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'llamaman.db'}"
    elif request.param == "mariadb":
        env["DATABASE_URL"] = request.getfixturevalue("database_url")
    return env


@pytest.fixture
def app(backend, tmp_path):
    """(admin client, services, clock): the background tick is stopped, ticks are manual."""
    app = make_app(tmp_path, **backend)
    svc = app.extensions["llamaman"]
    svc.cleanup.stop()
    clock = Clock()
    svc.cleanup.clock = clock
    # An admin key rather than first-run setup: the MariaDB users table is shared with other tests.
    key, token = svc.api_keys.create("cleanup-test", "admin", None)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    yield client, svc, clock
    svc.api_keys.revoke(key["id"])
    svc.stop()


def save_cleanup(client, **values) -> dict:
    response = client.post("/api/settings", json={"cleanup": values})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cleanup"]


def only(client, clock, **values) -> None:
    """Every job off but those in values (the settings may be shared: MariaDB), all of them due."""
    off = {"downloads_enabled": False, "instances_enabled": False, "stale_records_enabled": False}
    save_cleanup(client, **{**off, **values})
    clock.advance(AGE_SWEEP_S)  # past the tick the app ran when it started


def other_storage(svc, node: str):
    """A second Storage on the app's backend, for another node (or the same one, re-read)."""
    storage = open_storage(node=node, data_dir=svc.config.data_dir, recordings_dir=None,
                           database_url=svc.config.database_url)
    storage.open()
    return storage


# --- downloads ----------------------------------------------------------------------------

def add_download(svc, status: str, *, age_h: float, now: float, dest: Path | None = None) -> str:
    """A download record that finished (or, when active, was created) age_h hours ago."""
    job = new_job(kind="file", layout="repo", repo_id="acme/tiny-GGUF", filename="tiny.gguf", tag=None,
                  dest_path=None, destination=str(dest or "/nowhere"), speed_limit_mbps=0.0, source="api")
    at = now - age_h * HOUR
    job.update(status=status, created_at=at - 60, updated_at=at,
               finished_at=at if status in ("completed", "failed", "cancelled") else None)
    if dest is not None:
        job["files"] = [{"name": dest.name, "dest": str(dest), "size": 4, "sha256": None, "done": True}]
    svc.storage.downloads.put(job["id"], job)
    svc.downloads.note(job["id"], f"{status} {age_h}h ago")
    return job["id"]


def test_old_finished_downloads_go_and_everything_else_stays(app):
    client, svc, clock = app
    model = Path(svc.config.models_dir) / "acme" / "tiny.gguf"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"GGUF")
    now = clock()
    old = {s: add_download(svc, s, age_h=30, now=now, dest=model if s == "completed" else None)
           for s in ("completed", "failed", "cancelled")}
    kept = {f"recent {s}": add_download(svc, s, age_h=2, now=now) for s in ("completed", "failed", "cancelled")}
    kept.update({s: add_download(svc, s, age_h=300, now=now) for s in ("queued", "downloading", "paused")})
    elsewhere = other_storage(svc, "other-node")
    foreign = new_job(kind="file", status="completed", repo_id="acme/x", finished_at=now - 300 * HOUR)
    elsewhere.downloads.put(foreign["id"], foreign)

    only(client, clock, downloads_max_age_hours=24)
    assert svc.cleanup.tick() == {}, "a disabled job does not run"
    assert {j["id"] for j in client.get("/api/downloads").get_json()} >= set(old.values())

    save_cleanup(client, downloads_enabled=True)  # applies at the next tick
    assert svc.cleanup.tick() == {"downloads": 3}

    listed = {j["id"] for j in client.get("/api/downloads").get_json()}
    assert listed == set(kept.values())
    reread = other_storage(svc, svc.config.node_name)
    assert {j["id"] for j in reread.downloads.list()} == set(kept.values()), "removed from storage too"
    assert elsewhere.downloads.get(foreign["id"]) is not None, "another node's record is not this node's to clean"
    assert model.read_bytes() == b"GGUF", "a downloaded model file is never deleted"
    logs = svc.downloads.logs
    assert not any(logs.path(i).exists() for i in old.values())
    assert all(logs.path(i).exists() for i in kept.values())
    stamp = client.get("/api/settings").get_json()["cleanup"]["downloads_last_run_at"]
    assert stamp == clock()
    for storage in (reread, elsewhere):
        storage.close()


# --- instances ----------------------------------------------------------------------------

def add_instance(svc, status: str, *, created_h: float, stopped_h: float | None, now: float) -> str:
    """An instance record (created and stopped that many hours ago), with a log file."""
    instance_id = uuid.uuid4().hex[:8]
    svc.instances.registry.insert({
        "id": instance_id, "name": f"{status}-{instance_id}", "node": svc.config.node_name,
        "model_path": "/models/tiny.gguf", "real_model_path": "/models/tiny.gguf", "model_name": "tiny",
        "port": 0, "internal_port": 0, "api_key": "k", "launched_by": "admin", "status": status,
        "settings": {}, "restarts": 0, "created_at": now - created_h * HOUR, "started_at": None,
        "healthy_at": None, "stopped_at": None if stopped_h is None else now - stopped_h * HOUR,
        "error": None, "runtime": None, "last_request_at": None})
    svc.instances.logs.event(instance_id, status)
    return instance_id


def test_old_stopped_and_failed_instances_go_and_everything_else_stays(app):
    client, svc, clock = app
    now = clock()
    old = [add_instance(svc, "stopped", created_h=100, stopped_h=50, now=now),
           add_instance(svc, "failed", created_h=100, stopped_h=49, now=now),
           add_instance(svc, "failed", created_h=100, stopped_h=None, now=now)]  # undated: created_at
    kept = [add_instance(svc, "stopped", created_h=100, stopped_h=1, now=now),  # age counts from the stop
            *(add_instance(svc, s, created_h=100, stopped_h=None, now=now)
              for s in ("starting", "healthy", "sleeping"))]
    elsewhere = other_storage(svc, "other-node")
    elsewhere.instances.put("foreign1", {"id": "foreign1", "status": "stopped", "created_at": 0, "stopped_at": 0})

    only(client, clock, instances_enabled=True, instances_max_age_hours=48)
    assert svc.cleanup.tick() == {"instances": 3}

    assert {i["id"] for i in client.get("/api/instances").get_json()} == set(kept)
    reread = other_storage(svc, svc.config.node_name)
    assert {r["id"] for r in reread.instances.list()} == set(kept), "removed from storage too"
    assert elsewhere.instances.get("foreign1") is not None
    assert not any(svc.instances.logs.path(i).exists() for i in old)
    assert all(svc.instances.logs.path(i).exists() for i in kept)
    assert client.get("/api/settings").get_json()["cleanup"]["instances_last_run_at"] == clock()

    assert svc.cleanup.tick() == {}, "not due again before its interval"
    clock.advance(AGE_SWEEP_S)
    assert svc.cleanup.tick() == {"instances": 0}
    save_cleanup(client, instances_enabled=False)
    clock.advance(AGE_SWEEP_S)
    add_instance(svc, "stopped", created_h=100, stopped_h=100, now=clock())
    assert svc.cleanup.tick() == {}, "turned off: runs no more"
    assert len(client.get("/api/instances").get_json()) == len(kept) + 1
    for storage in (reread, elsewhere):
        storage.close()


# --- settings bad input ---------------------------------------------------------------------

BAD_CLEANUP = [
    {"downloads_max_age_hours": 0}, {"downloads_max_age_hours": -5}, {"instances_max_age_hours": 0},
    {"stale_records_interval_min": 0}, {"stale_records_interval_min": -1},
    {"downloads_max_age_hours": "a day"}, {"instances_max_age_hours": 1.5}, {"stale_records_interval_min": True},
    {"downloads_enabled": "yes"}, {"stale_records_enabled": 1}, {"downloads_max_age_hours": None, "bogus": 1},
    {"downloads_last_run_at": "yesterday"}, {"instances_last_run_at": -1},
    {"downloads_enabled": True, "downloads_max_age_hours": 12, "stale_records_interval_min": 0},
]


def test_bad_cleanup_settings_get_a_clear_400_and_change_nothing(app):
    client, _, _ = app
    before = client.get("/api/settings").get_json()
    for cleanup in BAD_CLEANUP + [[], "on", None]:
        response = client.post("/api/settings", json={"require_auth": False, "cleanup": cleanup})
        assert response.status_code == 400, (cleanup, response.get_data(as_text=True))
        assert "cleanup" in response.get_json()["error"], response.get_json()
    assert client.get("/api/settings").get_json() == before


def test_last_run_stamps_are_read_only(app):
    client, svc, clock = app
    only(client, clock, downloads_enabled=True)
    assert svc.cleanup.tick() == {"downloads": 0}
    stamps = client.get("/api/settings").get_json()["cleanup"]
    assert stamps["downloads_last_run_at"] == clock()
    # Sent back as GET shows them (what a settings form does), or made up: ignored either way.
    cleanup = save_cleanup(client, downloads_last_run_at=1.0, instances_last_run_at=2.0,
                           stale_records_last_run_at=None, downloads_max_age_hours=7)
    assert cleanup["downloads_max_age_hours"] == 7
    assert cleanup["downloads_last_run_at"] == stamps["downloads_last_run_at"]
    assert cleanup["instances_last_run_at"] == stamps["instances_last_run_at"]
