"""Ollama's `POST /api/pull` on top of the download manager: queue `org/repo:tag`, report progress.

Progress lines follow Ollama's pull format: {"status": "pulling manifest"}, then per file
{"status": "pulling <file>", "digest": "sha256:…", "total": N, "completed": M}, then
{"status": "verifying sha256 digest"}, {"status": "success"} — or {"error": "…"}.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from llamaman.downloads.jobs import ACTIVE, COMPLETED
from llamaman.downloads.names import parse_model_ref
from llamaman.downloads.service import DownloadService
from llamaman.errors import Conflict

POLL_S = 0.5


def start_pull(service: DownloadService, name: Any) -> str:
    """Queue the pull of `org/repo[:tag]` (or join the same pull already running); its job id."""
    repo, tag = parse_model_ref(name, field="model")
    try:
        return service.enqueue_tag(repo, tag, layout="repo", source="ollama")["id"]
    except Conflict as exc:
        if "job_id" in exc.extra:
            return str(exc.extra["job_id"])
        raise


def pull_progress(service: DownloadService, job_id: str, alive: Callable[[], bool] = lambda: True,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[dict[str, Any]]:
    """Ollama pull status lines until the job ends (or the server shuts down)."""
    yield {"status": "pulling manifest"}
    last: tuple | None = None
    while alive():
        job = service.get(job_id)
        if job["status"] not in ACTIVE:
            yield from _ending(job)
            return
        line = _file_line(job)
        key = tuple(sorted(line.items()))
        if key != last:
            last = key
            yield line
        sleep(POLL_S)


def wait_pull(service: DownloadService, job_id: str, alive: Callable[[], bool] = lambda: True,
              sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """The final line of a pull (for `stream: false`): success or an error."""
    final: dict[str, Any] = {"error": "the server is shutting down"}
    for line in pull_progress(service, job_id, alive, sleep):
        final = line
    return final


def _file_line(job: dict[str, Any]) -> dict[str, Any]:
    current = job.get("current_file")
    entry = next((f for f in job["files"] if f["name"] == current), None)
    if entry is None:
        return {"status": "pulling manifest"}
    return {"status": f"pulling {current}", "digest": f"sha256:{entry['sha256'] or ''}",
            "total": job.get("total_bytes") or 0, "completed": job.get("downloaded_bytes") or 0}


def _ending(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if job["status"] == COMPLETED:
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        yield {"status": "success"}
    else:
        yield {"error": f"pull {job['status']}: {job.get('error') or job['status']}"}
