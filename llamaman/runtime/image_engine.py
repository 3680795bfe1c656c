"""What the engine says about images, read into plain dicts; pull errors made readable."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from llamaman.errors import Invalid
from llamaman.runtime.docker_spec import LABEL_INSTANCE, LABEL_MANAGED, LABEL_NODE
from llamaman.runtime.image_names import ImageRef, parse_image

MIB = 1024 * 1024
# Names that mark an image as a llama.cpp server image in the local list.
LLAMA_HINTS = ("llama.cpp", "llama-cpp", "llamacpp", "llama_cpp")
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "network is unreachable",
                "no route to host", "tls handshake timeout", "server misbehaving", "dial tcp",
                "connection reset")
_SILENT = ("context deadline exceeded", "timeout exceeded", "request canceled while waiting")
_NOT_FOUND = ("manifest unknown", "not found", "name unknown")
_DENIED = ("unauthorized", "denied", "authentication required", "forbidden")


def safe_ref(name: Any) -> ImageRef | None:
    """Parse a name the engine or storage gave us; None when it is not a plain reference."""
    try:
        return parse_image(name)
    except Invalid:
        return None


def local_digest(summary: dict[str, Any] | None, ref: ImageRef) -> str | None:
    """The registry digest a local image has for ref's repository (None when never pulled)."""
    for entry in (summary or {}).get("RepoDigests") or []:
        parsed = safe_ref(entry)
        if parsed is not None and parsed.repo_key == ref.repo_key:
            return parsed.digest
    return None


def instances_by_image(client: Any, node: str) -> dict[str, list[str]]:
    """Image id -> ids of this node's instances whose container (any state) uses it."""
    labels = [f"{LABEL_MANAGED}=1", f"{LABEL_NODE}={node}"]
    found: dict[str, list[str]] = defaultdict(list)
    for container in client.api.containers(all=True, filters={"label": labels}):
        instance = (container.get("Labels") or {}).get(LABEL_INSTANCE)
        if instance:
            found[container.get("ImageID", "")].append(instance)
    return dict(found)


def describe(summary: dict[str, Any], ref: ImageRef) -> dict[str, Any]:
    """The engine facts of one local image under one of its names."""
    size = summary.get("Size")
    return {
        "present": True,
        "id": summary.get("Id"),
        "digest": local_digest(summary, ref),
        "size": size,
        "size_mb": round(size / MIB) if size else None,
        "created": _iso(summary.get("Created")),
    }


def is_llama_image(name: str) -> bool:
    return any(hint in name.lower() for hint in LLAMA_HINTS)


def tagged(summaries: list[dict[str, Any]]) -> dict[str, tuple[ImageRef, dict[str, Any]]]:
    """Canonical image key -> (its reference, its engine summary), for every tagged image."""
    found = {}
    for summary in summaries:
        for tag in summary.get("RepoTags") or []:
            ref = safe_ref(tag)
            if ref is not None and tag != "<none>:<none>":
                found[ref.key] = (ref, summary)
    return found


def explain_pull_error(ref: ImageRef, message: str) -> str:
    """Say what a failed pull means; the engine's own words follow."""
    low = message.lower()
    if any(hint in low for hint in _UNREACHABLE):
        return f"registry {ref.domain} is unreachable: {message}"
    if any(hint in low for hint in _SILENT):
        return f"registry {ref.domain} did not answer in time: {message}"
    if any(hint in low for hint in _DENIED):
        return (f"registry {ref.domain} refused access to {ref.name} (log the Docker engine in "
                f"with `docker login {ref.domain}`, or check the name): {message}")
    if any(hint in low for hint in _NOT_FOUND):
        return f"{ref.name} was not found in registry {ref.domain}: {message}"
    return f"pulling {ref.name} failed: {message}"


def _iso(created: Any) -> str | None:
    """The engine lists `Created` as epoch seconds; the API shows ISO 8601 (UTC)."""
    if isinstance(created, (int, float)) and created > 0:
        return dt.datetime.fromtimestamp(created, tz=dt.UTC).isoformat().replace("+00:00", "Z")
    return created if isinstance(created, str) else None
