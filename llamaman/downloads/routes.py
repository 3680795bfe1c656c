"""Download manager API of the README: /api/downloads (list, start, get, cancel, remove, logs).

Pause and resume (`POST /api/downloads/<id>/pause|resume`) are additions of llamaman.
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context

from llamaman.downloads.service import DownloadService
from llamaman.validation import reject_unknown
from llamaman.webio import int_arg, json_body, services

bp = Blueprint("downloads", __name__)
_START_FIELDS = frozenset({"repo_id", "filename", "hf_token", "hf_token_id", "speed_limit_mbps"})


def _downloads() -> DownloadService:
    return services().downloads


@bp.get("/api/downloads")
def list_downloads():
    return jsonify(_downloads().list())


@bp.post("/api/downloads")
def start_download():
    """Queue a download: repo_id, filename (blank = whole repo), hf_token or hf_token_id (a saved
    token), speed_limit_mbps."""
    body = json_body()
    reject_unknown(body, _START_FIELDS)
    job = _downloads().enqueue(body.get("repo_id"), body.get("filename"), hf_token=body.get("hf_token"),
                               hf_token_id=body.get("hf_token_id"),
                               speed_limit_mbps=body.get("speed_limit_mbps") or 0.0)
    return jsonify(job), 201


@bp.get("/api/downloads/<job_id>")
def get_download(job_id: str):
    return jsonify(_downloads().get(job_id))


@bp.delete("/api/downloads/<job_id>")
def cancel_download(job_id: str):
    """Cancel a download; its partial files are removed."""
    return jsonify(_downloads().cancel(job_id))


@bp.delete("/api/downloads/<job_id>/remove")
def remove_download(job_id: str):
    """Remove a completed, failed or cancelled entry."""
    return jsonify(_downloads().remove(job_id))


@bp.post("/api/downloads/<job_id>/pause")
def pause_download(job_id: str):
    return jsonify(_downloads().pause(job_id))


@bp.post("/api/downloads/<job_id>/resume")
def resume_download(job_id: str):
    return jsonify(_downloads().resume(job_id))


@bp.get("/api/downloads/<job_id>/logs")
def download_logs(job_id: str):
    service = _downloads()
    service.get(job_id)  # 404 for unknown ids
    return jsonify({"id": job_id, "lines": service.logs.tail(job_id, int_arg("lines", 200, 1, 10_000))})


@bp.get("/api/downloads/<job_id>/logs/stream")
def stream_download_logs(job_id: str):
    """SSE tail of the log; event ids are byte offsets (Last-Event-ID resumes)."""
    service = _downloads()
    service.get(job_id)
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    events = service.logs.stream(job_id, last_id, int_arg("lines", 100, 0, 10_000),
                                 alive=lambda: not service.closing)
    return Response(stream_with_context(events), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

