"""Image management against the real engine and a real local registry (docker-registry)."""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from llamaman.runtime.docker_spec import LABEL_INSTANCE, LABEL_MANAGED, LABEL_NODE
from tests.appkit import make_app, setup_admin
from tests.helpers import TEST_LABELS
from tests.imagekit import RegistryKit, SilentRegistry

PREFIX = "llamaman-imgtest-"
NETWORK = "llamaman-imgtest-net"
SMALL = {"ctx_size": 512, "threads": 2, "parallel": 1, "n_gpu_layers": 0}


class ImageApi:
    """A started app on the Docker runtime, an admin session, and its services."""

    def __init__(self, tmp_path: Path, llama_image: str, **env: str) -> None:
        self.node = f"img-{uuid.uuid4().hex[:8]}"
        self.app = make_app(tmp_path / self.node, LLAMAMAN_NODE_NAME=self.node, LLAMAMAN_RUNTIME="docker",
                            LLAMA_IMAGE=llama_image, LLAMAMAN_IN_DOCKER="false", LLAMA_NETWORK=NETWORK,
                            LLAMA_CONTAINER_PREFIX=PREFIX, LLAMA_HOST_ADDR="127.0.0.1", **env)
        self.svc = self.app.extensions["llamaman"]
        self.client = self.app.test_client()
        self.headers = {"X-CSRF-Token": setup_admin(self.client)}

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def send(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.client.open(path, method=method, json=body, headers=self.headers, **kwargs)

    def pull(self, image: str) -> dict:
        response = self.send("POST", "/api/images/pull", {"image": image})
        assert response.status_code == 202, response.get_data(as_text=True)
        return response.get_json()

    def wait_job(self, job_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"/api/images/pulls/{job_id}")
            if job["status"] != "pulling":
                return job
            time.sleep(0.05)
        raise AssertionError(f"pull job {job_id} still running: {job}")

    def entry(self, name: str) -> dict | None:
        return next((e for e in self.get("/api/images")["images"] if e["name"] == name), None)


@pytest.fixture
def kit(docker_client, registry, llama_image):
    kit = RegistryKit(docker_client, registry, llama_image)
    yield kit
    kit.cleanup()


@pytest.fixture
def image_api(tmp_path, kit):
    """Factory of apps (each with its own node) whose LLAMA_IMAGE is the given name."""
    apps: list[ImageApi] = []

    def start(llama_image: str, **env: str) -> ImageApi:
        apps.append(ImageApi(tmp_path, llama_image, **env))
        return apps[-1]

    yield start
    for api in apps:
        api.svc.stop()
    for container in kit.client.containers.list(all=True, filters={"name": PREFIX}):
        container.remove(force=True)


def test_pull_runs_in_background_with_layer_progress_and_tracks_the_image(kit, image_api, docker_client):
    fresh = kit.repo("fresh") + ":v1"
    digest = kit.push(kit.variant(fresh, layer_bytes=3 * 1024 * 1024), fresh)
    docker_client.images.remove(fresh)  # the registry has it; the engine lacks its new layer
    api = image_api(kit.repo("active") + ":v1")

    started = api.pull(fresh)
    job = api.wait_job(started["job_id"])

    assert job["status"] == "done", job
    assert job["new_digest"] == digest and job["old_digest"] is None and not job["digest_changed"]
    sized = [layer for layer in job["layers"] if layer["total"]]
    assert sized, f"no layer progress was recorded: {job['layers']}"
    assert all(layer["current"] == layer["total"] for layer in sized), job["layers"]
    assert {layer["status"] for layer in job["layers"]} <= {"Pull complete", "Already exists"}
    assert job["progress"]["percent"] == 100.0
    entry = api.entry(fresh)
    assert entry["present"] and entry["tracked"] and not entry["active"], entry
    assert entry["digest"] == digest and entry["id"] == docker_client.images.get(fresh).id
    assert entry["size"] > 3 * 1024 * 1024 and entry["created"] and entry["last_pulled_at"]
    assert api.get("/api/images/pull-status")["id"] == started["job_id"]
    tracked = api.get("/api/settings")["docker_images"]["images"]
    assert [record["name"] for record in tracked] == [fresh]


def test_repull_of_a_retagged_image_reports_the_new_digest(kit, image_api, docker_client, llama_image):
    name = kit.repo("llama") + ":stable"
    old = kit.push(llama_image, name)
    api = image_api(name)
    first = api.wait_job(api.pull(name)["job_id"])
    assert first["status"] == "done" and first["new_digest"] == old and not first["digest_changed"]

    new = kit.push(kit.variant(kit.repo("next") + ":v1"), name)  # same tag, different image
    docker_client.images.get(llama_image).tag(*name.rsplit(":", 1))  # this host still has the old one
    second = api.wait_job(api.pull(name)["job_id"])

    assert new != old
    assert second["status"] == "done", second
    assert (second["old_digest"], second["new_digest"], second["digest_changed"]) == (old, new, True)
    entry = api.entry(name)
    assert entry["digest"] == new and entry["previous_digest"] == old and entry["digest_changed_at"]
    assert entry["active"] and entry["id"] != docker_client.images.get(llama_image).id
    report = api.get("/api/images")["auto_update_last_result"]
    assert report["old_digest"] == old and report["new_digest"] == new and report["updated"] is True


def test_auto_update_pulls_the_active_image_and_leaves_running_instances_alone(
        kit, image_api, docker_client, llama_image, models_dir, model_path):
    name = kit.repo("auto") + ":server"
    old = kit.push(llama_image, name)
    ports = random.randrange(20000, 30000, 200)
    api = image_api(name, MODELS_DIR=str(models_dir), HOST_MODELS_DIR=str(models_dir),
                    PORT_RANGE_START=str(ports), PORT_RANGE_END=str(ports + 9),
                    INTERNAL_PORT_RANGE_START=str(ports + 100), INTERNAL_PORT_RANGE_END=str(ports + 109))
    now = [1_000_000.0]
    api.svc.images.clock = lambda: now[0]
    instance = _launch(api, model_path)
    container = docker_client.containers.get(instance["runtime"]["handle"])
    assert api.svc.images.check_auto_update() is None  # off by default

    saved = api.send("POST", "/api/images/settings",
                     {"auto_update_enabled": True, "auto_update_interval_hours": 2})
    assert saved.status_code == 200, saved.get_data(as_text=True)
    first = api.wait_job(api.svc.images.check_auto_update()["id"])
    assert first["reason"] == "auto_update" and first["status"] == "done" and not first["digest_changed"]
    now[0] += 3600  # one hour later: not due yet
    assert api.svc.images.check_auto_update() is None

    new = kit.push(kit.variant(kit.repo("auto-next") + ":v1"), name)
    docker_client.images.get(llama_image).tag(*name.rsplit(":", 1))
    now[0] += 3601  # two hours after the first check
    second = api.wait_job(api.svc.images.check_auto_update()["id"])

    listing = api.get("/api/images")
    assert listing["auto_update_last_check_at"] == now[0]
    assert listing["auto_update_last_result"]["old_digest"] == old
    assert listing["auto_update_last_result"]["new_digest"] == new and second["digest_changed"]
    container.reload()
    assert container.status == "running" and container.image.id == docker_client.images.get(llama_image).id
    after = api.get(f"/api/instances/{instance['id']}")
    assert after["status"] == "healthy" and after["runtime"]["handle"] == container.id
    assert api.send("DELETE", f"/api/instances/{instance['id']}").status_code == 200


def _launch(api: ImageApi, model_path: Path) -> dict:
    response = api.send("POST", "/api/instances", {"model_path": str(model_path), **SMALL})
    assert response.status_code == 201, response.get_data(as_text=True)
    instance_id = response.get_json()["id"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        record = api.get(f"/api/instances/{instance_id}")
        if record["status"] == "healthy":
            return record
        assert record["status"] == "starting", record
        time.sleep(0.1)
    raise AssertionError(f"instance {instance_id} never became healthy")


def test_delete_removes_an_image_and_refuses_active_and_used_ones(kit, image_api, docker_client):
    active, used, foreign, gone = (kit.repo(n) + ":v1" for n in ("active", "used", "foreign", "gone"))
    for tag in (active, used, foreign, gone):
        kit.variant(tag)
    api = image_api(active)
    instance_container = docker_client.containers.create(
        used, command=["--version"], name=f"{PREFIX}{uuid.uuid4().hex[:8]}",
        labels={**TEST_LABELS, LABEL_MANAGED: "1", LABEL_NODE: api.node, LABEL_INSTANCE: "inst-old"})
    docker_client.containers.create(foreign, command=["--version"], labels=TEST_LABELS,
                                    name=f"{PREFIX}{uuid.uuid4().hex[:8]}")

    refused = api.send("DELETE", "/api/images", {"image": active})
    assert refused.status_code == 409 and "active LLAMA_IMAGE" in refused.get_json()["error"]
    in_use = api.send("DELETE", "/api/images", {"image": used})
    assert in_use.status_code == 409 and in_use.get_json()["instances"] == ["inst-old"], in_use.get_json()
    assert api.entry(used)["used_by"] == ["inst-old"]
    engine_says = api.send("DELETE", "/api/images", {"image": foreign})
    assert engine_says.status_code == 409, engine_says.get_json()
    assert "Docker refused" in engine_says.get_json()["error"]
    assert "conflict" in engine_says.get_json()["error"].lower()
    for still in (active, used, foreign):
        docker_client.images.get(still)

    deleted = api.send("DELETE", "/api/images", {"image": gone})
    assert deleted.status_code == 200, deleted.get_json()
    assert deleted.get_json()["removed_from_docker"] and gone in deleted.get_json()["untagged"]
    assert gone not in {t for image in docker_client.images.list() for t in image.tags}
    again = api.send("DELETE", "/api/images", {"image": gone})
    assert again.status_code == 404 and gone in again.get_json()["error"]
    instance_container.remove(force=True)


def test_a_tracked_image_is_untracked_on_delete(kit, image_api, docker_client):
    name = kit.repo("tracked") + ":v1"
    kit.push(kit.variant(name), name)
    api = image_api(kit.repo("active") + ":v1")
    assert api.wait_job(api.pull(name)["job_id"])["status"] == "done"
    assert api.entry(name)["tracked"]

    assert api.send("DELETE", "/api/images", {"image": name}).status_code == 200
    assert api.entry(name) is None
    assert api.get("/api/settings")["docker_images"]["images"] == []


def test_unreachable_registry_fails_with_a_clear_message(kit, image_api):
    api = image_api(kit.repo("active") + ":v1")
    name = f"127.0.0.1:1/{kit.namespace}/llama:v1"

    job = api.wait_job(api.pull(name)["job_id"], timeout=60)

    assert job["status"] == "error"
    assert job["error"].startswith("registry 127.0.0.1:1 is unreachable"), job["error"]
    assert "connection refused" in job["error"]
    assert api.entry(name) is None  # a failed pull tracks nothing


def test_identical_pulls_while_one_runs_share_one_job(kit, image_api):
    api = image_api(kit.repo("active") + ":v1")
    silent = SilentRegistry()
    spellings = [f"{silent.address}/{kit.namespace}/held", f"{silent.address}/{kit.namespace}/held:latest"]
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def pull(i: int) -> None:
        barrier.wait()
        ids.append(api.svc.images.pull(spellings[i % 2])[0]["id"])

    threads = [threading.Thread(target=pull, args=(i,)) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        via_api = [api.pull(name) for name in spellings]
        assert len(set(ids)) == 1 and len(ids) == 8, ids
        assert {r["job_id"] for r in via_api} == set(ids) and all(r["already_running"] for r in via_api)
        assert api.entry(f"{silent.address}/{kit.namespace}/held:latest") is None
        jobs = [j for j in api.get("/api/images/pulls")["jobs"] if silent.address in j["image"]]
        assert len(jobs) == 1 and jobs[0]["status"] == "pulling"
    finally:
        silent.release()
    assert api.wait_job(ids[0])["status"] == "error"


def test_bad_input_is_refused_and_changes_nothing(kit, image_api, caplog):
    api = image_api(kit.repo("active") + ":v1")
    before = api.get("/api/images")
    secret = f"s3cret-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)

    for bad in ("ubuntu; rm -rf /", "$(reboot)", "a|b", "x y:latest", "UPPER/../x", "ubuntu:`id`", "",
                f"admin:{secret}@{kit.registry}/x/y:v1", f"https://admin:{secret}@{kit.registry}/x:v1",
                5, ["ubuntu"], {"name": "ubuntu"}, True):
        for method, path in (("POST", "/api/images/pull"), ("DELETE", "/api/images")):
            if bad == "" and method == "POST":
                continue  # an empty name means "the active image", as in LlamaMan
            response = api.send(method, path, {"image": bad})
            assert response.status_code == 400, (bad, method, response.get_data(as_text=True))
            assert secret not in response.get_data(as_text=True)
    assert api.send("POST", "/api/images/pull", data="not json", content_type="application/json").status_code == 400
    assert api.send("DELETE", "/api/images").status_code == 400
    assert api.send("DELETE", "/api/images", {"image": kit.repo("never") + ":v1"}).status_code == 404

    for bad_options in ({"auto_update_interval_hours": 0}, {"auto_update_interval_hours": -3},
                        {"auto_update_interval_hours": "24"}, {"auto_update_interval_hours": 1.5},
                        {"auto_update_enabled": "yes"}, {"auto_update_enabled": 1}, {"bogus": True}):
        assert api.send("POST", "/api/images/settings", bad_options).status_code == 400, bad_options
        settings = api.send("POST", "/api/settings", {"docker_images": bad_options})
        assert settings.status_code == 400, bad_options
    bad_track = api.send("POST", "/api/settings", {"docker_images": {"images": [f"u:{secret}@h/x"]}})
    assert bad_track.status_code == 400 and secret not in bad_track.get_data(as_text=True)

    assert api.get("/api/images/pulls")["jobs"] == []
    after = api.get("/api/images")
    assert {k: v for k, v in after.items() if k != "images"} == {k: v for k, v in before.items() if k != "images"}
    assert secret not in caplog.text
    assert secret not in "".join(p.read_text() for p in Path(api.svc.config.data_dir).rglob("*.json"))


def test_image_routes_need_the_docker_runtime(tmp_path):
    app = make_app(tmp_path, LLAMAMAN_RUNTIME="process", LLAMAMAN_IN_DOCKER="false")
    try:
        client = app.test_client()
        headers = {"X-CSRF-Token": setup_admin(client)}
        for method, path, body in (("GET", "/api/images", None), ("GET", "/api/images/pulls", None),
                                   ("POST", "/api/images/pull", {"image": "ubuntu"}),
                                   ("DELETE", "/api/images", {"image": "ubuntu"}),
                                   ("POST", "/api/images/settings", {"auto_update_enabled": True})):
            response = client.open(path, method=method, json=body, headers=headers)
            assert response.status_code == 409, (path, response.get_data(as_text=True))
            assert "needs the Docker runtime" in response.get_json()["error"]
        assert app.extensions["llamaman"].images.check_auto_update() is None
    finally:
        app.extensions["llamaman"].stop()
