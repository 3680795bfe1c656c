"""The model library: an index of the GGUF files and HuggingFace folders under MODELS_DIR.

Requests read an immutable snapshot and never touch the disk. A background thread stats the
directories of the last scan every `poll_s` seconds and rescans when one changed (a file was
added, removed or renamed); a full rescan also runs every `full_rescan_s` to catch files
rewritten in place. `invalidate()` rescans at once (after downloads and deletes). Rescans only
stat files: a GGUF header is parsed again only when its (size, mtime_ns) changed.

Lock order: `_delete_lock` before `_scan_lock`; snapshots are swapped by plain assignment.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from llamaman.errors import Invalid, NotFound, Unavailable
from llamaman.models import removal
from llamaman.models.index import IndexBuilder, Snapshot
from llamaman.models.scanner import dirs_changed, scan

log = logging.getLogger(__name__)

POLL_S = 2.0
FULL_RESCAN_S = 60.0


class ModelLibrary:
    """Index of models under MODELS_DIR, kept current in the background."""

    def __init__(self, models_dir: Path, poll_s: float = POLL_S, full_rescan_s: float = FULL_RESCAN_S) -> None:
        self.models_dir = Path(os.path.abspath(models_dir))
        self.poll_s = poll_s
        self.full_rescan_s = full_rescan_s
        self._builder = IndexBuilder()
        self._snapshot = Snapshot()
        self._scan_lock = threading.Lock()
        self._delete_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scan_count = 0

    @property
    def parse_count(self) -> int:
        """GGUF headers parsed so far (a test hook: unchanged files are never parsed again)."""
        return self._builder.parse_count

    def start(self) -> None:
        """Build the index and start watching for changes."""
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="model-library", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def refresh(self) -> None:
        """Rescan MODELS_DIR now (stats only; changed files are re-parsed)."""
        with self._scan_lock:
            began = time.perf_counter()
            self._snapshot = self._builder.build(scan(str(self.models_dir)))
            self.scan_count += 1
            log.debug("model library: %d models indexed in %.1f ms", len(self._snapshot.models),
                      (time.perf_counter() - began) * 1000)

    def invalidate(self) -> None:
        """Tell the library the disk changed (download finished, file deleted): rescan now."""
        self.refresh()

    def _watch(self) -> None:
        last_full = time.monotonic()
        while not self._stop.wait(self.poll_s):
            try:
                if time.monotonic() - last_full >= self.full_rescan_s:
                    last_full = time.monotonic()
                    self.refresh()
                elif dirs_changed(self._snapshot.dirs):
                    self.refresh()
            except Exception:  # the watcher must outlive any one bad scan
                log.exception("model library rescan failed")

    # --- reads: snapshot only, no disk access ---------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Every model (mmproj files excluded), sorted by name."""
        return [dict(entry) for entry in self._snapshot.models]

    def list_json(self) -> bytes:
        """The JSON array of list(), encoded once per index change."""
        return self._snapshot.body

    def view(self, name: str, render: Callable[[list[dict[str, Any]]], Any]) -> bytes:
        """A JSON rendering of list() (e.g. Ollama's /api/tags), encoded once per index change."""
        snap = self._snapshot
        body = snap.views.get(name)
        if body is None:  # a race renders twice at worst: both results are equal
            body = snap.views[name] = json.dumps(render([dict(e) for e in snap.models])).encode()
        return body

    def find(self, name_or_path: str) -> dict[str, Any] | None:
        """The model called name (case-insensitive, `:latest` optional) or at path, else None."""
        snap = self._snapshot
        key = name_or_path.strip().lower().removesuffix(":latest")
        entry = snap.by_name.get(key) or snap.by_name.get(key.removesuffix(".gguf"))
        if entry is None and name_or_path:
            path = os.path.normpath(name_or_path if os.path.isabs(name_or_path)
                                    else self.models_dir / name_or_path)
            entry = snap.by_path.get(path)
        return dict(entry) if entry is not None else None

    def lookup(self, raw: Any) -> dict[str, Any]:
        """The model at a client-named path; Invalid outside MODELS_DIR, NotFound if unknown."""
        given, real = removal.locate(self.models_dir, raw)
        entry = self._entry_at(self._snapshot, given, real)
        if entry is None:
            raise self._missing(raw, given)
        return dict(entry)

    def metadata(self, path: Any) -> dict[str, Any]:
        """Everything known about a model: its entry, all header keys and the chat template."""
        entry = self.lookup(path)
        return {**entry, **copy.deepcopy(self._snapshot.details.get(entry["path"], {}))}

    def layers(self, path: Any) -> int | None:
        """The block count of the model at path (None for unreadable files)."""
        return self.lookup(path)["layers"]

    def disk_usage(self) -> dict[str, int]:
        """Total, used and free bytes of the volume holding MODELS_DIR."""
        try:
            usage = shutil.disk_usage(self.models_dir)
        except OSError as exc:
            raise Unavailable(f"MODELS_DIR is not accessible: {exc.strerror or exc}") from exc
        return {"total": usage.total, "used": usage.used, "free": usage.free}

    # --- delete -------------------------------------------------------------------------------

    def delete(self, raw: Any, busy: Iterable[str] = ()) -> dict[str, Any]:
        """Delete a model (all shards, or its folder) unless an instance in `busy` uses it."""
        given, real = removal.locate(self.models_dir, raw)
        with self._delete_lock:
            entry = self._entry_at(self._snapshot, given, real)
            if entry is None:
                self.refresh()  # the watcher may not have seen a file created a moment ago
                entry = self._entry_at(self._snapshot, given, real)
            if entry is None:
                raise self._missing(raw, given)
            targets = self._snapshot.files[entry["path"]]
            removal.check_targets(self.models_dir, targets)
            removal.check_not_in_use(targets, busy)
            removed = removal.remove_model(targets)
            self.refresh()
        log.info("deleted model %s (%d files)", entry["path"], len(removed))
        return {"deleted": entry["path"], "files": removed}

    @staticmethod
    def _entry_at(snap: Snapshot, given: str, real: str) -> dict[str, Any] | None:
        return snap.by_path.get(given) or snap.by_path.get(real)

    @staticmethod
    def _missing(raw: Any, given: str) -> Exception:
        if removal.not_a_model(given):
            return Invalid(f"not a model file: {raw}", field="path")
        return NotFound(f"model not found: {raw}")
