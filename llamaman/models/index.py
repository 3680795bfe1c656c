"""Immutable index snapshots built from a scan, re-parsing only files whose stat changed."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llamaman.models import entries
from llamaman.models.entries import Parsed
from llamaman.models.scanner import (
    HF_SIDECAR,
    SIDECAR_SUFFIX,
    FileInfo,
    ScanResult,
    Stat,
)
from llamaman.models.source_file import repo_id_of

T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of the library; requests only ever read one of these."""

    models: tuple[dict[str, Any], ...] = ()  # sorted by (name, path)
    by_path: dict[str, dict[str, Any]] = field(default_factory=dict)  # any file of a model → entry
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # entry path → files to delete
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry path → full metadata
    body: bytes = b"[]"
    dirs: dict[str, int] = field(default_factory=dict)
    views: dict[str, bytes] = field(default_factory=dict)  # renderings of `models`, see ModelLibrary.view


class StatCache:
    """Values computed from a file, reused while its (size, mtime_ns) is unchanged."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[Stat, Any]] = {}
        self._seen: set[str] = set()

    def get(self, path: str, stat: Stat, compute: Callable[[str], T]) -> T:
        self._seen.add(path)
        cached = self._items.get(path)
        if cached is not None and cached[0] == stat:
            return cached[1]
        value = compute(path)
        self._items[path] = (stat, value)
        return value

    def prune(self) -> None:
        """Forget files not seen since the last prune."""
        self._items = {p: v for p, v in self._items.items() if p in self._seen}
        self._seen = set()


class IndexBuilder:
    """Turns scan results into snapshots; keeps the per-file caches between scans."""

    def __init__(self) -> None:
        self.parse_count = 0  # GGUF headers parsed so far (test hook: unchanged files are not)
        self._headers = StatCache()
        self._jsons = StatCache()
        self._last: tuple[tuple, Snapshot] | None = None

    def build(self, scan: ScanResult) -> Snapshot:
        """A snapshot of everything the scan found (the previous one when nothing changed)."""
        signature = _signature(scan)
        if self._last is not None and self._last[0] == signature:
            return self._last[1]
        snapshot = self._build(scan)
        self._last = (signature, snapshot)
        return snapshot

    def _build(self, scan: ScanResult) -> Snapshot:
        models: list[dict[str, Any]] = []
        files: dict[str, tuple[str, ...]] = {}
        details: dict[str, dict[str, Any]] = {}
        mmprojs: dict[str, list[str]] = {}
        for group in entries.group_shards(scan.ggufs):
            parsed = [self._headers.get(f.path, f.stat, self._parse) for f in group]
            if entries.is_mmproj(group[0].path, parsed[0]):
                mmprojs.setdefault(os.path.dirname(group[0].path), []).append(group[0].path)
            entry = entries.gguf_entry(group, parsed, self._repo_id(group[0].path, scan))
            files[entry["path"]] = tuple(f.path for f in group)
            details[entry["path"]] = _gguf_details(entry, group, parsed[0])
            models.append(entry)
        for folder in scan.hf_dirs.values():
            entry = entries.hf_entry(folder, self._json(folder.path, "config.json", folder.files),
                                     self._json(folder.path, "tokenizer_config.json", folder.files),
                                     self._repo_id(folder.path, scan))
            files[entry["path"]] = (folder.path,)
            details[entry["path"]] = {"config": self._json(folder.path, "config.json", folder.files)}
            models.append(entry)
        self._headers.prune()
        self._jsons.prune()
        return _snapshot(models, files, details, mmprojs, scan.dirs)

    def _parse(self, path: str) -> Parsed:
        self.parse_count += 1
        return entries.parse_gguf(path)

    def _json(self, folder: str, name: str, present: dict[str, Stat]) -> dict[str, Any] | None:
        if name not in present:
            return None
        return self._jsons.get(os.path.join(folder, name), present[name], entries.read_json)

    def _repo_id(self, model_path: str, scan: ScanResult) -> str | None:
        sidecar = os.path.join(model_path, HF_SIDECAR) if model_path in scan.hf_dirs \
            else model_path + SIDECAR_SUFFIX
        stat = scan.sidecars.get(sidecar)
        return None if stat is None else self._jsons.get(sidecar, stat, repo_id_of)


def _signature(scan: ScanResult) -> tuple:
    """Everything a snapshot depends on: paths and stats of models, HF files, sidecars, dirs."""
    return (tuple(scan.ggufs), tuple(sorted(scan.sidecars.items())), tuple(sorted(scan.dirs.items())),
            tuple((f.path, f.size, f.mtime_ns, tuple(sorted(f.files.items()))) for f in scan.hf_dirs.values()))


def _gguf_details(entry: dict[str, Any], group: list[FileInfo], head: Parsed) -> dict[str, Any]:
    return {"metadata": head.metadata, "chat_template": head.chat_template,
            "shard_files": [f.path for f in group], "parameter_count": head.parameter_count or None}


def _snapshot(models: list[dict[str, Any]], files: dict[str, tuple[str, ...]],
              details: dict[str, dict[str, Any]], mmprojs: dict[str, list[str]],
              dirs: dict[str, int]) -> Snapshot:
    """Attach mmproj files to their sibling models, drop them from the list, and index."""
    projectors = {path for paths in mmprojs.values() for path in paths}
    by_path: dict[str, dict[str, Any]] = {}
    for entry in models:
        if entry["type"] == "gguf" and entry["path"] not in projectors:
            found = sorted(mmprojs.get(os.path.dirname(entry["path"]), ()))
            entry["mmproj"] = found[0] if found else None
        for path in files[entry["path"]]:
            by_path[path] = entry
            by_path.setdefault(os.path.realpath(path), entry)
    listed = sorted((e for e in models if e["path"] not in projectors), key=lambda e: (e["name"], e["path"]))
    by_name: dict[str, dict[str, Any]] = {}
    for entry in listed:
        by_name.setdefault(entry["name"], entry)
    return Snapshot(tuple(listed), by_path, by_name, files, details,
                    json.dumps(listed, allow_nan=False).encode(), dict(dirs))
