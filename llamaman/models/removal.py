"""Path checks for client-named model paths, and deleting a model's files from disk."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llamaman.errors import Conflict, Invalid, LlamamanError
from llamaman.models.scanner import is_strictly_inside
from llamaman.models.source_file import sidecar_path

MAX_PATH = 4096


def locate(models_dir: Path, raw: Any, field: str = "path") -> tuple[str, str]:
    """(normalised path, real path) of a client-named path strictly inside MODELS_DIR."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw or len(raw) > MAX_PATH:
        raise Invalid(f"'{field}' must be the path of a model inside MODELS_DIR", field=field)
    root, real_root = os.path.abspath(models_dir), os.path.realpath(models_dir)
    given = os.path.normpath(raw if os.path.isabs(raw) else os.path.join(root, raw))
    if not (is_strictly_inside(given, root) or is_strictly_inside(given, real_root)):
        raise Invalid(f"'{field}' must be inside MODELS_DIR ({models_dir}) and not MODELS_DIR itself",
                      field=field)
    real = os.path.realpath(given)
    if not is_strictly_inside(real, real_root):
        raise Invalid(f"'{field}' resolves outside MODELS_DIR (symlink)", field=field)
    return given, real


def not_a_model(given: str) -> bool:
    """True when something exists at given but it cannot be a model (for 400 rather than 404)."""
    if os.path.isdir(given):
        return not os.path.isfile(os.path.join(given, "config.json"))
    return os.path.lexists(given) and not given.lower().endswith(".gguf")


def check_targets(models_dir: Path, targets: Iterable[str]) -> None:
    """Refuse to delete anything whose real path is not strictly inside MODELS_DIR."""
    real_root = os.path.realpath(models_dir)
    for target in targets:
        if not is_strictly_inside(os.path.realpath(target), real_root):
            raise Invalid(f"{target} resolves outside MODELS_DIR (symlink); not deleted", field="path")


def check_not_in_use(targets: Iterable[str], busy: Iterable[str]) -> None:
    """Conflict when an active instance runs any of targets (or a file inside a target folder)."""
    names = {p for t in targets for p in (t, os.path.realpath(t))}
    for path in busy:
        for candidate in {os.path.normpath(path), os.path.realpath(path)}:
            if candidate in names or any(candidate.startswith(n + os.sep) for n in names):
                raise Conflict(f"model is in use by a running instance ({path}); stop it first")


def remove_model(targets: tuple[str, ...]) -> list[str]:
    """Delete a model's files (all shards, or the folder) and its sidecars; returns what went."""
    removed = []
    try:
        for target in targets:
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                _unlink(target)
                _unlink(str(sidecar_path(target)))
            removed.append(target)
    except OSError as exc:
        raise LlamamanError(f"could not delete {exc.filename or 'model'}: {exc.strerror or exc}") from exc
    return removed


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
