"""The source file (`.llamaman.json`, a "sidecar" on disk) that records where a model came from.

Format: a JSON object, at most 64 KiB, written by the download manager next to the model:
    GGUF file (first shard for split models): `<file name>.llamaman.json`
    HuggingFace folder:                       `<folder>/.llamaman.json`
Keys: "repo_id" (required, "org/name"), and optionally "filename", "revision" (str),
"downloaded_at" (epoch seconds). Unknown keys are kept by writers and ignored by the library;
a malformed file is ignored (the model simply shows no repo_id).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from llamaman.errors import Invalid
from llamaman.models.scanner import HF_SIDECAR, SIDECAR_SUFFIX

MAX_SIDECAR_BYTES = 64 * 1024
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def sidecar_path(model_path: str | Path) -> Path:
    """Where the sidecar of a model file (first shard) or HF folder lives."""
    path = Path(model_path)
    return path / HF_SIDECAR if path.is_dir() else path.with_name(path.name + SIDECAR_SUFFIX)


def valid_repo_id(value: Any) -> bool:
    """True for an `org/name` HuggingFace repo id without traversal."""
    return isinstance(value, str) and bool(REPO_ID_RE.match(value)) and ".." not in value


def read_sidecar(path: str | Path) -> dict[str, Any] | None:
    """The sidecar's JSON object, or None when missing, oversized or malformed."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SIDECAR_BYTES + 1)
        value = json.loads(data) if len(data) <= MAX_SIDECAR_BYTES else None
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def repo_id_of(path: str | Path) -> str | None:
    """The sidecar's repo_id when it is a valid one."""
    data = read_sidecar(path)
    repo_id = data.get("repo_id") if data else None
    return repo_id if valid_repo_id(repo_id) else None


def write_sidecar(model_path: str | Path, repo_id: str, **fields: Any) -> Path:
    """Atomically write the sidecar of a model (for the download manager); returns its path."""
    if not valid_repo_id(repo_id):
        raise Invalid(f"invalid repo_id {repo_id!r}", field="repo_id")
    target = sidecar_path(model_path)
    data = json.dumps({**fields, "repo_id": repo_id}, sort_keys=True).encode()
    if len(data) > MAX_SIDECAR_BYTES:
        raise Invalid("sidecar metadata too large")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".sidecar-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
