"""Checks and naming rules for repo ids, paths in a repo, shards, llamactl tags and cache names.

Every name that reaches the file system passes through here first, so a repo id or a path
in a repo can never point outside the destination directory.
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from llamaman.errors import Invalid
from llamaman.models.scanner import SHARD_RE
from llamaman.models.source_file import valid_repo_id

MAX_FILENAME_LEN = 1000
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\\]")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
DEFAULT_TAG = "latest"
DEFAULT_QUANT = "Q4_K_M"


def check_repo_id(value: Any) -> str:
    """The repo id when it is a plain `org/name`; Invalid otherwise."""
    if not valid_repo_id(value):
        raise Invalid(f"invalid repo_id {str(value)[:200]!r}: expected 'org/name' "
                      "(letters, digits, '-', '_', '.'; no '..')", field="repo_id")
    return value


def check_filename(value: Any) -> str | None:
    """A relative path inside the repo, or None for 'the whole repository'; Invalid otherwise."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if not isinstance(value, str) or len(value) > MAX_FILENAME_LEN:
        raise Invalid(f"'filename' must be a path inside the repository of at most {MAX_FILENAME_LEN} characters",
                      field="filename")
    parts = value.split("/")
    if value.startswith("/") or _CONTROL_RE.search(value) or any(p in ("", ".", "..") for p in parts):
        raise Invalid(f"invalid filename {value[:200]!r}: must be a relative path inside the repository "
                      "(no leading '/', no '.' or '..' parts, no backslashes)", field="filename")
    return value


def check_speed_limit(value: Any, name: str = "speed_limit_mbps") -> float:
    """A speed limit in megabits/s (0 = unlimited)."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"'{name}' must be a number of megabits per second (0 = unlimited)", field=name)
    try:
        number = float(value)
    except ValueError:
        raise Invalid(f"'{name}' must be a number of megabits per second (0 = unlimited)", field=name) from None
    if not 0 <= number <= 1_000_000:  # NaN fails this too
        raise Invalid(f"'{name}' must be between 0 and 1000000 (0 = unlimited)", field=name)
    return number


def inside(root: Path, path: Path) -> Path:
    """The real path of `path` when it lies strictly inside `root`; Invalid otherwise."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real == real_root or not real.startswith(real_root + os.sep):
        raise Invalid(f"destination {str(path)[:300]!r} must lie inside {root}", field="dest_path")
    return Path(real)


def repo_dir(root: Path, repo_id: str) -> Path:
    """Where a repository's files land by default: <root>/<org>/<name>."""
    org, name = check_repo_id(repo_id).split("/")
    return inside(root, Path(root) / org / name)


def shard_siblings(filename: str, names: list[str]) -> list[str]:
    """All shards of a split GGUF named by one of them (sorted), or [filename] when not a shard."""
    match = SHARD_RE.match(filename)
    if not match:
        return [filename]
    base, total, suffix = match["base"], match["total"], match["suffix"]
    wanted = {f"{base}-{index:05d}-of-{total}{suffix}" for index in range(1, int(total) + 1)}
    found = sorted(n for n in names if n in wanted)
    return found or [filename]


def sibling_shard_path(first_dest: Path, shard_name: str) -> Path:
    """Where a further shard lands when the first shard was given an explicit destination."""
    first, shard = SHARD_RE.match(first_dest.name), SHARD_RE.match(PurePosixPath(shard_name).name)
    if first and shard:
        return first_dest.with_name(f"{first['base']}-{shard['index']}-of-{shard['total']}{first['suffix']}")
    return first_dest.with_name(PurePosixPath(shard_name).name)


def parse_model_ref(value: Any, field: str = "repo") -> tuple[str, str]:
    """Split llamactl's `org/model[:tag]` (an `hf.co/` prefix is accepted) into (repo, tag)."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"'{field}' is required: 'org/model' or 'org/model:tag'", field=field)
    text = value.strip()
    for prefix in ("https://huggingface.co/", "huggingface.co/", "hf.co/"):
        text = text.removeprefix(prefix)
    repo, _, tag = text.partition(":")
    check_repo_id(repo)
    tag = tag or DEFAULT_TAG
    if not _TAG_RE.match(tag):
        raise Invalid(f"invalid tag {tag[:100]!r}: expected a quantization such as Q4_K_M", field=field)
    return repo, tag


def matches_tag(filename: str, tag: str) -> bool:
    """True when a file name carries the quantization tag as a whole word (case-insensitive)."""
    pattern = rf"(?:^|[-_./]){re.escape(tag)}(?:[-.]|$)"
    return re.search(pattern, PurePosixPath(filename).name, re.IGNORECASE) is not None


def is_mmproj(filename: str) -> bool:
    """A multimodal projector file (llama.cpp's mmproj GGUF)."""
    name = PurePosixPath(filename).name.lower()
    return name.endswith(".gguf") and "mmproj" in name


def cache_name(repo_id: str, filename: str) -> str:
    """llamactl's cache file name: `{org}_{model}_{filename}` (slashes in the path become '_')."""
    org, model = check_repo_id(repo_id).split("/")
    return f"{org}_{model}_{filename.replace('/', '_')}"
