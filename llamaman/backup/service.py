"""Model backup and restore: every model with its preset and source, as one JSON document.

Restore is all-or-nothing on validation: every entry's path and preset is checked before
anything is merged or queued, so a bad document changes nothing.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llamaman.downloads import names
from llamaman.errors import Invalid, LlamamanError
from llamaman.models.library import ModelLibrary
from llamaman.models.source_file import read_sidecar, sidecar_path
from llamaman.presets.service import PresetService
from llamaman.presets.validate import parse_fields

FORMAT = "llamaman-models"
VERSION = 1
MAX_ENTRIES = 10_000
_SOURCE_KEYS = ("repo_id", "filename", "revision", "sha256")


class Downloads(Protocol):
    def enqueue(self, repo_id: str, filename: str | None, *, dest_path: Path | None = None) -> dict: ...


@dataclass
class Entry:
    """One validated model of a restore document."""

    path: str  # absolute, inside MODELS_DIR
    relative: str
    repo_id: str | None
    filename: str | None
    preset: dict[str, Any] | None


@dataclass
class RestoreReport:
    merged: list[dict[str, Any]] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    unrestorable: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"merged": self.merged, "queued": self.queued, "unrestorable": self.unrestorable,
                "failed": self.failed}


class BackupService:
    """Export and restore model metadata and presets of this node."""

    def __init__(self, library: ModelLibrary, presets: PresetService, downloads: Downloads | None,
                 models_dir: Path, node: str) -> None:
        self.library = library
        self.presets = presets
        self.downloads = downloads
        self.models_dir = Path(os.path.realpath(models_dir))
        self.node = node

    def export(self) -> dict[str, Any]:
        """Every model on disk and every preset, with its known HuggingFace source."""
        presets = {p["model_path"]: p for p in self.presets.list()}
        models = [self._exported(entry, presets.pop(entry["path"], None)) for entry in self.library.list()]
        models += [self._orphan(path, preset) for path, preset in sorted(presets.items())]
        return {"format": FORMAT, "version": VERSION, "node": self.node,
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": models}

    def restore(self, document: Any) -> dict[str, Any]:
        """Merge presets of present models, queue downloads of missing ones with a source."""
        entries = [self._entry(item, index) for index, item in enumerate(_models_of(document))]
        report = RestoreReport()
        for entry in entries:
            self._restore_one(entry, report)
        if report.queued:
            self.library.invalidate()
        return report.as_dict()

    # --- export ---------------------------------------------------------------------------

    def _exported(self, entry: dict[str, Any], preset: dict[str, Any] | None) -> dict[str, Any]:
        source = read_sidecar(sidecar_path(entry["path"])) or {}
        item = {"path": self._relative(entry["path"]), "name": entry["name"], "type": entry["type"],
                "size": entry["size"], "quant": entry.get("quant"), "present": True}
        item.update({key: source.get(key) for key in _SOURCE_KEYS})
        item["repo_id"] = entry.get("repo_id") or item["repo_id"]
        item["preset"] = _preset_fields(preset)
        return item

    def _orphan(self, path: str, preset: dict[str, Any]) -> dict[str, Any]:
        """A preset whose model is not on disk: exported so a restore can pre-place it."""
        item: dict[str, Any] = {"path": self._relative(path), "present": False}
        item.update({key: None for key in _SOURCE_KEYS})
        item["preset"] = _preset_fields(preset)
        return item

    def _relative(self, path: str) -> str:
        real = os.path.realpath(path)
        return os.path.relpath(real, self.models_dir) if real.startswith(f"{self.models_dir}/") else path

    # --- restore --------------------------------------------------------------------------

    def _entry(self, item: Any, index: int) -> Entry:
        """Validate one document entry; Invalid names the entry and the problem."""
        where = f"models[{index}]"
        if not isinstance(item, dict):
            raise Invalid(f"{where} must be an object")
        relative = item.get("path")
        if not isinstance(relative, str) or os.path.isabs(relative):
            raise Invalid(f"{where}.path must be a path relative to MODELS_DIR", field="path")
        try:
            path = self.presets.key(relative)
            preset = item.get("preset")
            if preset is not None:
                parse_fields(preset)
            repo_id = item.get("repo_id")
            if repo_id is not None:
                names.check_repo_id(repo_id)
            filename = names.check_filename(item.get("filename"))
        except LlamamanError as err:
            raise Invalid(f"{where}: {err.message}") from err
        return Entry(path, relative, repo_id, filename, preset)

    def _restore_one(self, entry: Entry, report: RestoreReport) -> None:
        if os.path.exists(entry.path):
            if entry.preset:
                self.presets.merge_missing(entry.path, entry.preset)
            report.merged.append({"path": entry.relative, "preset": bool(entry.preset)})
        elif entry.repo_id and entry.filename and self.downloads is not None:
            self._queue(entry, report)
        else:
            reason = "no known HuggingFace source" if not entry.repo_id or not entry.filename \
                else "downloads are not available"
            report.unrestorable.append({"path": entry.relative, "reason": reason})

    def _queue(self, entry: Entry, report: RestoreReport) -> None:
        try:
            job = self.downloads.enqueue(entry.repo_id, entry.filename, dest_path=Path(entry.path))
        except LlamamanError as err:
            report.failed.append({"path": entry.relative, "reason": err.message})
            return
        if entry.preset:
            self.presets.merge_missing(entry.path, entry.preset)  # ready when the file lands
        report.queued.append({"path": entry.relative, "repo_id": entry.repo_id,
                              "filename": entry.filename, "job_id": job.get("id")})


def _models_of(document: Any) -> list[Any]:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise Invalid(f"not a model backup: expected an object with \"format\": \"{FORMAT}\"")
    models = document.get("models")
    if not isinstance(models, list):
        raise Invalid("'models' must be a list", field="models")
    if len(models) > MAX_ENTRIES:
        raise Invalid(f"too many models in one backup (limit {MAX_ENTRIES})", field="models")
    return models


def _preset_fields(preset: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: v for k, v in preset.items() if k != "model_path"} if preset else None

