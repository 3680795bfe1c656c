"""The node-scoped `docker_images` setting: tracked images and the auto-update options.

A CUDA host and a ROCm host track different images, so the document lives in the node's
own settings scope (README "Per-node vs shared settings"); a node that never wrote one
inherits a shared (legacy) value. Per-image records also carry what the last pull found:
digest, previous digest, when it changed, size, pull and check times.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from llamaman.errors import Invalid
from llamaman.runtime.image_names import ImageRef, parse_image
from llamaman.storage.base import SettingsRepository
from llamaman.validation import get_bool, get_int, require_object

KEY = "docker_images"
MAX_TRACKED = 100
MAX_INTERVAL_HOURS = 24 * 365
DEFAULTS: dict[str, Any] = {
    "images": [],
    "auto_update_enabled": False,
    "auto_update_interval_hours": 24,
    "auto_update_last_check_at": None,  # reports, written by the auto-update job only
    "auto_update_last_result": None,
}
_OPTIONS = ("images", "auto_update_enabled", "auto_update_interval_hours")
_REPORTS = ("auto_update_last_check_at", "auto_update_last_result")


def effective(stored: Any) -> dict[str, Any]:
    """The stored document over the defaults."""
    merged = copy.deepcopy(DEFAULTS)
    if isinstance(stored, dict):
        merged.update({k: copy.deepcopy(v) for k, v in stored.items() if k in DEFAULTS})
    return merged


def validate(value: Any) -> dict[str, Any]:
    """Check a `docker_images` settings patch; report fields sent back unchanged are ignored."""
    body = require_object(value, f"'{KEY}'")
    unknown = sorted(set(body) - set(_OPTIONS) - set(_REPORTS))
    if unknown:
        raise Invalid(f"unknown '{KEY}' setting(s): {', '.join(unknown)}")
    clean: dict[str, Any] = {}
    if "auto_update_enabled" in body:
        clean["auto_update_enabled"] = get_bool(body, "auto_update_enabled")
    if "auto_update_interval_hours" in body:
        clean["auto_update_interval_hours"] = get_int(
            body, "auto_update_interval_hours", low=1, high=MAX_INTERVAL_HOURS)
    if "images" in body:
        clean["images"] = [ref.name for ref in _tracked_refs(body["images"])]
    return {k: v for k, v in clean.items() if v is not None}


def _tracked_refs(value: Any) -> list[ImageRef]:
    if not isinstance(value, list):
        raise Invalid(f"'{KEY}.images' must be a list of image names")
    if len(value) > MAX_TRACKED:
        raise Invalid(f"'{KEY}.images' may track at most {MAX_TRACKED} images")
    refs: dict[str, ImageRef] = {}
    for item in value:
        name = item.get("name") if isinstance(item, dict) else item
        ref = parse_image(name, f"{KEY}.images[]")
        refs.setdefault(ref.key, ref)
    return list(refs.values())


def merge(current: Any, patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a validated patch; tracked images keep the records of the names that stay."""
    state = effective(current)
    for key, value in patch.items():
        if key == "images":
            state["images"] = [find_record(state, parse_image(name)) or {"name": name} for name in value]
        else:
            state[key] = value
    return state


def find_record(state: dict[str, Any], ref: ImageRef) -> dict[str, Any] | None:
    """The tracked record of an image (any spelling of its name), or None."""
    for record in state["images"]:
        if record_key(record) == ref.key:
            return record
    return None


def record_key(record: Any) -> str | None:
    try:
        return parse_image(record.get("name")).key
    except (Invalid, AttributeError):
        return None  # a hand-edited record we cannot read is left alone


class ImageSettings:
    """Reads and atomically updates this node's `docker_images` document."""

    def __init__(self, repo: SettingsRepository, node: str) -> None:
        self.repo = repo
        self.node = node

    def read(self) -> dict[str, Any]:
        own = self.repo.get(self.node).get(KEY)
        return effective(own if own is not None else self.repo.get("global").get(KEY))

    def update(self, fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Run fn on a copy of the document (it mutates it) and store the result atomically."""
        inherited = self.repo.get("global").get(KEY)

        def apply(current: dict) -> dict:
            own = current.get(KEY)
            state = effective(own if own is not None else inherited)
            fn(state)
            return {**current, KEY: state}

        return effective(self.repo.update(self.node, apply).get(KEY))

    def track(self, ref: ImageRef, **fields: Any) -> None:
        """Add or refresh the record of an image with the given fields."""
        def change(state: dict[str, Any]) -> None:
            record = find_record(state, ref)
            if record is None:
                record = {"name": ref.name}
                state["images"].append(record)
            record.update(fields)
        self.update(change)

    def untrack(self, ref: ImageRef) -> bool:
        """Drop an image from the tracked list; return whether it was tracked."""
        found = []

        def change(state: dict[str, Any]) -> None:
            kept = [r for r in state["images"] if record_key(r) != ref.key]
            found.append(len(kept) != len(state["images"]))
            state["images"] = kept
        self.update(change)
        return found[0]
