"""Per-model launch presets with live apply to running instances.

Lock order: `PresetService._save_lock` is taken before any instance op lock (through
`InstanceService.update_options`); nothing holding an instance lock calls in here.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from llamaman.config import Config
from llamaman.errors import Invalid, LlamamanError, NotFound
from llamaman.instances import records as rec
from llamaman.instances.service import InstanceService
from llamaman.presets.validate import (
    OPTION_FIELDS,
    PRESET_FIELDS,
    RELAUNCH_FIELDS,
    parse_fields,
    preset_key,
)
from llamaman.storage.base import Collection, Record

log = logging.getLogger(__name__)

HIDDEN = frozenset({"node"})  # stamped by node-scoped storage; not a setting


class PresetService:
    """Presets keyed by the normalised absolute model path under MODELS_DIR."""

    def __init__(self, repo: Collection, instances: InstanceService, config: Config) -> None:
        self.repo = repo
        self.instances = instances
        self.config = config
        self._save_lock = threading.Lock()  # saves and their live apply happen in order

    def key(self, model_path: Any) -> str:
        """The storage key of a model path (absolute, or relative to MODELS_DIR)."""
        return preset_key(self.config.models_dir, _raw(model_path))

    def list(self) -> list[Record]:
        """Every preset of this node, sorted by model path."""
        return sorted((_view(r) for r in self.repo.list()), key=lambda p: p["model_path"])

    def get(self, model_path: Any) -> Record:
        """The preset of a model; NotFound when none is saved."""
        key = self.key(model_path)
        record = self.repo.get(key)
        if record is None:
            raise NotFound(f"no preset for {key}", model_path=key)
        return _view(record)

    def find(self, model_path: Any) -> Record | None:
        """The preset of a model (by its path, else its resolved path), or None."""
        key = self.key(model_path)
        record = self.repo.get(key)
        real = os.path.realpath(key)
        if record is None and real != key:
            record = self.repo.get(real)
        return _view(record) if record is not None else None

    def delete(self, model_path: Any) -> None:
        """Forget a preset; running instances keep their settings."""
        key = self.key(model_path)
        if not self.repo.delete(key):
            raise NotFound(f"no preset for {key}", model_path=key)

    def save(self, model_path: Any, body: Any) -> dict[str, Any]:
        """Merge body into the model's preset, then apply its live fields to running instances."""
        key = self.key(model_path)
        fields = parse_fields(_without_own_path(body, key, self.key))
        with self._save_lock:
            stored = self.repo.update(key, lambda current: {**(current or {}), **fields,
                                                            "model_path": key})
            applied, relaunch = self._apply(key, fields)
        return {"preset": _view(stored or {}), "applied": applied, "needs_relaunch": relaunch}

    def merge_missing(self, model_path: Any, body: Any) -> Record:
        """Add the fields the preset does not have yet (restore: existing values win)."""
        key = self.key(model_path)
        fields = parse_fields(_without_own_path(body, key, self.key))
        stored = self.repo.update(key, lambda current: {**fields, **(current or {}), "model_path": key})
        return _view(stored or {})

    def launch_body(self, model_path: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        """A launch body: the model's full preset under the explicit fields (explicit wins)."""
        try:
            preset = self.find(model_path) or {}
        except Invalid:
            preset = {}  # the launch itself reports the bad path
        # Only launch settings: upstream's extras (favorite, note, ...) describe the preset.
        body = {k: v for k, v in preset.items() if k in PRESET_FIELDS}
        body.update(overrides)
        body.setdefault("model_path", _raw(model_path))
        return body

    # --- live apply -----------------------------------------------------------------------

    def _apply(self, key: str, fields: dict[str, Any]) -> tuple[list[dict], list[dict]]:
        """Update the model's running instances in place; report what needs a relaunch."""
        applied, relaunch = [], []
        for instance in self._running(key):
            live = {k: v for k, v in fields.items() if k in OPTION_FIELDS and instance.get(k) != v}
            baked = sorted(k for k, v in fields.items() if k in RELAUNCH_FIELDS and instance.get(k) != v)
            if live and self._update(instance["id"], live):
                applied.append({"id": instance["id"], "fields": sorted(live)})
            if baked:
                relaunch.append({"id": instance["id"], "fields": baked})
        return applied, relaunch

    def _running(self, key: str) -> list[Record]:
        """Active instances of this model, by the path they were launched with or its target."""
        paths = {key, os.path.realpath(key)}
        return [i for i in self.instances.list() if i["status"] in rec.ACTIVE
                and (i.get("model_path") in paths or i.get("real_model_path") in paths)]

    def _update(self, instance_id: str, live: dict[str, Any]) -> bool:
        try:
            self.instances.update_options(instance_id, live)
        except LlamamanError as err:  # removed meanwhile: nothing left to update
            log.info("preset not applied to instance %s: %s", instance_id, err.message)
            return False
        return True


def _view(record: Record) -> Record:
    return {k: v for k, v in record.items() if k not in HIDDEN}


def _raw(model_path: Any) -> Any:
    return os.fspath(model_path) if isinstance(model_path, os.PathLike) else model_path


def _without_own_path(body: Any, key: str, key_of: Callable[[Any], str]) -> Any:
    """Body minus a model_path field that names the same model (round trip of a GET)."""
    if not isinstance(body, dict) or "model_path" not in body:
        return body
    if key_of(body["model_path"]) != key:
        raise Invalid("'model_path' in the body names another model than the URL", field="model_path")
    return {k: v for k, v in body.items() if k != "model_path"}
