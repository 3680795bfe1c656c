"""Docker image routes (LlamaMan's paths and fields, plus pull jobs with layer progress)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from llamaman.errors import Invalid, NotFound
from llamaman.runtime.images import ImageService
from llamaman.webio import json_body, services

bp = Blueprint("images", __name__)


def _images() -> ImageService:
    return services().images


@bp.before_request
def need_docker():
    """Every image route needs the Docker runtime: a clear 409 otherwise."""
    _images().require_docker()


@bp.get("/api/images")
def list_images():
    return jsonify(_images().list())


@bp.post("/api/images/pull")
def pull_image():
    """Start a background pull of `image` (default: the active LLAMA_IMAGE); one job per image."""
    body = _optional_body()
    image = body.get("image")
    if image is None or (isinstance(image, str) and not image.strip()):
        image = _images().active_image()
    job, created = _images().pull(image)
    return jsonify({"ok": True, "image": job["image"], "job_id": job["id"],
                    "already_running": not created, "job": job}), 202


@bp.get("/api/images/pulls")
def list_pulls():
    return jsonify({"jobs": _images().jobs.list()})


@bp.get("/api/images/pulls/<job_id>")
def get_pull(job_id: str):
    job = _images().jobs.get(job_id)
    if job is None:
        raise NotFound(f"pull job {job_id} not found")
    return jsonify(job)


@bp.get("/api/images/pull-status")
def pull_status():
    """LlamaMan's single pull status: the newest job (status idle when there is none)."""
    jobs = _images().jobs.list()
    if not jobs:
        return jsonify({"image": None, "status": "idle", "message": "", "started_at": None,
                        "finished_at": None})
    return jsonify(jobs[0])


@bp.delete("/api/images")
def delete_image():
    """Delete `image` from the engine and the tracked list."""
    body = json_body()
    if body.get("image") is None:
        raise Invalid("'image' is required (the name of a local image)")
    return jsonify(_images().delete(body["image"]))


@bp.post("/api/images/settings")
def save_image_settings():
    """Auto-update options of this node: `auto_update_enabled`, `auto_update_interval_hours`."""
    return jsonify({"ok": True, **_images().save_options(json_body())})


def _optional_body() -> dict:
    """A JSON object body, or {} when the request has none."""
    if not request.get_data(cache=True):
        return {}
    return json_body()
