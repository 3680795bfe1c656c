"""Docker image management: list, pull in the background, delete, and auto-update the active image.

Only the Docker runtime has images; with another runtime every call is a Conflict saying so.
Running instances are never touched: an updated image is used by the next launch.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from requests.exceptions import ReadTimeout, RequestException

from llamaman.errors import Conflict, Unavailable
from llamaman.errors import NotFound as Missing
from llamaman.periodic import PeriodicJob
from llamaman.runtime import image_engine as engine
from llamaman.runtime import image_settings
from llamaman.runtime.image_names import ImageRef, parse_image
from llamaman.runtime.image_pulls import PullJob, PullJobs
from llamaman.storage.base import SettingsRepository

log = logging.getLogger(__name__)

AUTO_UPDATE_TICK_S = 60.0  # how often the auto-update job looks whether a check is due
NEEDS_DOCKER = ("image management needs the Docker runtime: this node runs llama-server as "
                "{kind} (set LLAMAMAN_RUNTIME=docker, or auto with a reachable Docker engine)")
_ENGINE_ERRORS = (DockerException, RequestException)


class ImageService:
    """Images of this node's Docker engine and the node's tracked list."""

    def __init__(self, repo: SettingsRepository, node: str, runtime_of: Callable[[], Any],
                 clock: Callable[[], float] = time.time) -> None:
        """`runtime_of()` returns the current runtime (set when the instance service starts)."""
        self.node = node
        self.store = image_settings.ImageSettings(repo, node)
        self.runtime_of = runtime_of
        self.clock = clock
        self.jobs = PullJobs(self._run_pull)
        self.auto_update = PeriodicJob("image-auto-update", AUTO_UPDATE_TICK_S, self.check_auto_update)

    def start(self) -> None:
        self.auto_update.start()

    def stop(self) -> None:
        self.auto_update.stop()
        self.jobs.join()

    # -- queries

    def list(self) -> dict[str, Any]:
        """Tracked and local llama.cpp images, with which is active and which instances use each."""
        client, active = self._client(), self.active_image()
        summaries = _engine(lambda: client.api.images())
        used = _engine(lambda: engine.instances_by_image(client, self.node))
        state = self.store.read()
        local = engine.tagged(summaries)
        keys = [k for k in (image_settings.record_key(r) for r in state["images"]) if k]
        active_ref = engine.safe_ref(active)
        keys += [k for k, (ref, s) in local.items() if engine.is_llama_image(ref.name) or s["Id"] in used]
        if active_ref is not None:
            keys.insert(0, active_ref.key)
        entries = [self._entry(key, local, state, used, active_ref) for key in dict.fromkeys(keys)]
        return {"images": entries, "current_image": active, "active_image": active,
                **{k: v for k, v in state.items() if k != "images"}}

    def _entry(self, key: str, local: dict, state: dict, used: dict, active: ImageRef | None) -> dict:
        ref, summary = local.get(key, (None, None))
        record = next((r for r in state["images"] if image_settings.record_key(r) == key), None)
        ref = ref or engine.safe_ref((record or {}).get("name")) or active
        facts = engine.describe(summary, ref) if summary else {"present": False}
        running = self.jobs.running_for(key)
        return {
            "name": ref.name, **_stored_facts(record), **{k: v for k, v in facts.items() if v is not None},
            "tracked": record is not None, "active": active is not None and key == active.key,
            "used_by": used.get(summary["Id"], []) if summary else [],
            "pull_job": running["id"] if running else None,
        }

    def active_image(self) -> str:
        """The LLAMA_IMAGE new instances are launched from."""
        return self.require_docker().host().image

    # -- pulls

    def pull(self, value: Any, reason: str = "manual") -> tuple[dict[str, Any], bool]:
        """Start pulling an image (or join its running pull); return the job and whether it is new."""
        ref = parse_image(value)
        self.require_docker()
        job, created = self.jobs.start(ref, reason)
        if created:
            log.info("image pull %s started: %s", job.id, ref.name)
        return self.jobs.get(job.id) or {}, created

    def _run_pull(self, job: PullJob) -> None:
        ref = parse_image(job.image)
        client = self._client()
        self.jobs.set(job, old_digest=engine.local_digest(_summary(client, ref), ref))
        error = self._stream_pull(client, ref, job)
        new = None if error else _summary(client, ref)
        new_digest = job.new_digest or engine.local_digest(new, ref)
        changed = bool(job.old_digest and new_digest and new_digest != job.old_digest)
        if error is None:
            self._record_pull(ref, new, new_digest, job.old_digest if changed else None)
        self.jobs.finish(job, error=error, new_digest=new_digest, digest_changed=changed)
        try:
            self._report_if_active(ref, job)
        except Exception:  # the pull itself is done; a failed report must not undo it
            log.exception("cannot record the auto-update report of %s", ref.name)
        log.info("image pull %s %s: %s%s", job.id, "failed" if error else "done", ref.name,
                 f" ({error})" if error else f" digest {new_digest}" + (" (changed)" if changed else ""))

    def _stream_pull(self, client: Any, ref: ImageRef, job: PullJob) -> str | None:
        """Follow the engine's pull stream into the job; return the failure reason or None."""
        try:
            stream = client.api.pull(ref.repository, tag=ref.digest or ref.tag or "latest",
                                     stream=True, decode=True)
            for event in stream:
                if event.get("error"):
                    return engine.explain_pull_error(ref, str(event["error"]))
                self.jobs.update(job, [event])
        except APIError as exc:
            return engine.explain_pull_error(ref, str(exc.explanation or exc))
        except ReadTimeout:
            return f"registry {ref.domain} did not answer in time (the Docker engine stopped reporting progress)"
        except _ENGINE_ERRORS as exc:
            return f"Docker API error: cannot reach the Docker engine ({exc})"
        return None

    def _record_pull(self, ref: ImageRef, summary: dict | None, digest: str | None,
                     previous: str | None) -> None:
        now = self.clock()
        fields: dict[str, Any] = {"name": ref.name, "digest": digest, "last_pulled_at": now,
                                  "last_checked_at": now}
        if summary:
            fields.update(id=summary.get("Id"), size_mb=round((summary.get("Size") or 0) / engine.MIB))
        if previous:
            fields.update(previous_digest=previous, digest_changed_at=now)
        self.store.track(ref, **fields)

    def _report_if_active(self, ref: ImageRef, job: PullJob) -> None:
        """Any finished pull of the active image is the auto-update report (old/new digest)."""
        active = engine.safe_ref(self.active_image())
        if active is None or active.key != ref.key:
            return
        report = {"image": ref.name, "job_id": job.id, "reason": job.reason,
                  "checked_at": self.clock(), "old_digest": job.old_digest,
                  "new_digest": job.new_digest, "updated": job.digest_changed, "error": job.error}
        self.store.update(lambda state: state.__setitem__("auto_update_last_result", report))

    # -- auto-update

    def check_auto_update(self) -> dict[str, Any] | None:
        """Pull the active image when auto-update is on and the interval passed; return the job."""
        runtime = self.runtime_of()
        if getattr(runtime, "kind", None) != "docker":
            return None
        state = self.store.read()
        last = state["auto_update_last_check_at"]
        now = self.clock()
        if not state["auto_update_enabled"] or (
                last is not None and now - last < state["auto_update_interval_hours"] * 3600):
            return None
        self.store.update(lambda s: s.__setitem__("auto_update_last_check_at", now))
        job, _ = self.pull(self.active_image(), reason="auto_update")
        return job

    def save_options(self, body: Any) -> dict[str, Any]:
        """Save auto-update options (and the tracked list) of this node."""
        self.require_docker()
        patch = image_settings.validate(body)
        state = self.store.update(lambda s: s.update(image_settings.merge(s, patch)))
        return {k: v for k, v in state.items() if k != "images"}

    # -- delete

    def delete(self, value: Any) -> dict[str, Any]:
        """Delete a local image; refused for the active image and for images instances use."""
        ref = parse_image(value)
        client = self._client()
        active = engine.safe_ref(self.active_image())
        if active is not None and active.key == ref.key:
            raise Conflict(f"{ref.name} is the active LLAMA_IMAGE of this node; "
                           "set LLAMA_IMAGE to another image before deleting it")
        summary = _summary(client, ref)
        if summary is None:
            return self._forget_absent(ref)
        users = _engine(lambda: engine.instances_by_image(client, self.node)).get(summary["Id"])
        if users:
            raise Conflict(f"{ref.name} is in use by instance(s) {', '.join(sorted(users))}: stop them first",
                           instances=sorted(users))
        result = self._remove(client, ref)
        self.store.untrack(ref)
        log.info("image deleted: %s", ref.name)
        return {"ok": True, "image": ref.name, "removed_from_docker": True, **result}

    def _forget_absent(self, ref: ImageRef) -> dict[str, Any]:
        """Not in the engine: untrack it if tracked, else it does not exist (404)."""
        if self.store.untrack(ref):
            return {"ok": True, "image": ref.name, "removed_from_docker": False, "untagged": [], "deleted": []}
        raise Missing(f"image {ref.name} not found (neither in the Docker engine nor tracked)")

    def _remove(self, client: Any, ref: ImageRef) -> dict[str, list[str]]:
        try:
            answer = client.api.remove_image(ref.name, force=False)
        except (ImageNotFound, NotFound):
            raise Missing(f"image {ref.name} not found in the Docker engine") from None
        except APIError as exc:
            if exc.status_code == 409:
                raise Conflict(f"Docker refused to delete {ref.name}: {exc.explanation or exc}") from None
            raise Unavailable(f"Docker API error: {exc.explanation or exc}") from None
        except _ENGINE_ERRORS as exc:
            raise Unavailable(f"Docker API error: cannot reach the Docker engine ({exc})") from None
        return {"untagged": [a["Untagged"] for a in answer or [] if "Untagged" in a],
                "deleted": [a["Deleted"] for a in answer or [] if "Deleted" in a]}

    # -- engine access

    def require_docker(self) -> Any:
        runtime = self.runtime_of()
        kind = getattr(runtime, "kind", "unknown")
        if kind != "docker":
            label = {"process": "native processes", "unavailable": "nothing (no runtime is available)"}
            raise Conflict(NEEDS_DOCKER.format(kind=label.get(kind, kind)), runtime=kind)
        return runtime

    def _client(self) -> Any:
        runtime = self.require_docker()
        return _engine(runtime.client)


def _engine(call: Callable[[], Any]) -> Any:
    """Run an engine call; errors become Unavailable with the engine's words."""
    try:
        return call()
    except NotFound:
        raise  # callers decide what a missing object means
    except APIError as exc:
        raise Unavailable(f"Docker API error: {exc.explanation or exc}") from None
    except _ENGINE_ERRORS as exc:
        raise Unavailable(f"Docker API error: cannot reach the Docker engine ({exc})") from None


def _summary(client: Any, ref: ImageRef) -> dict[str, Any] | None:
    """The engine's inspect data of an image by name, or None when absent."""
    try:
        return _engine(lambda: client.api.inspect_image(ref.name))
    except (ImageNotFound, NotFound):
        return None


def _stored_facts(record: dict | None) -> dict[str, Any]:
    keep = ("digest", "size_mb", "last_pulled_at", "last_checked_at", "previous_digest", "digest_changed_at")
    return {k: (record or {}).get(k) for k in keep}
