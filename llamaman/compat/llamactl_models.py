"""llamactl's model API: download `org/model:tag` into the cache, list and delete cached models.

Cache directory precedence: LLAMACTL_LLAMACPP_CACHE_DIR, then LLAMA_CACHE, else
<MODELS_DIR>/llamactl-cache (inside MODELS_DIR, so cached models appear in the library).
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from llamaman.downloads import cache
from llamaman.downloads.names import check_repo_id, parse_model_ref
from llamaman.downloads.service import DownloadService
from llamaman.models.routes import busy_paths
from llamaman.validation import reject_unknown
from llamaman.webio import json_body, services

bp = Blueprint("llamactl_models", __name__)
PREFIX = "/api/v1/backends/llama-cpp/models"


def _downloads() -> DownloadService:
    return services().downloads


@bp.post(f"{PREFIX}/download")
def download_model():
    """Queue `{"repo": "org/model:tag"}` (tag defaults to `latest`) → {job_id, repo, tag}."""
    body = json_body()
    reject_unknown(body, {"repo", "hf_token"})
    repo, tag = parse_model_ref(body.get("repo"))
    job = _downloads().enqueue_tag(repo, tag, layout="cache", hf_token=body.get("hf_token"), source="llamactl")
    return jsonify({"job_id": job["id"], "repo": repo, "tag": tag})


@bp.get(PREFIX)
def list_models():
    """Cached models: repo, tag, files (name, path, size, modified), total size, file count."""
    return jsonify(cache.list_cached(_downloads().cache_dir))


@bp.delete(PREFIX)
def delete_model():
    """Delete a cached model (`?repo=org/model`, optional `&tag=`: every tag when omitted)."""
    repo = check_repo_id(request.args.get("repo"))
    tag = request.args.get("tag") or None
    if tag is not None:
        _, tag = parse_model_ref(f"{repo}:{tag}", field="tag")
    svc = services()
    result = cache.delete_cached(svc.downloads.cache_dir, repo, tag, busy=busy_paths(svc.instances.list()))
    svc.library.invalidate()
    return jsonify(result)


@bp.get(f"{PREFIX}/jobs")
def list_jobs():
    return jsonify([job for job in _downloads().list() if job["kind"] == "tag"])


@bp.get(f"{PREFIX}/jobs/<job_id>")
def get_job(job_id: str):
    return jsonify(_downloads().get(job_id))


@bp.delete(f"{PREFIX}/jobs/<job_id>")
def cancel_job(job_id: str):
    return jsonify(_downloads().cancel(job_id))
