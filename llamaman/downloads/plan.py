"""Which files a job downloads, and where each one lands.

Two kinds of request:
  "file": README API / restore: one file (a shard expands to all shards) or, blank, the whole repo;
          lands at <MODELS_DIR>/<org>/<name>/<path in repo> unless an explicit destination is given.
  "tag":  llamactl API / Ollama pull: the GGUF of a quantization tag (all split parts), plus the
          repo's mmproj file and preset.ini when present; lands in the llamactl cache with
          `{org}_{model}_{filename}` names ("cache" layout) or in the repo folder ("repo" layout).
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from llamaman.downloads.failures import DownloadFailed
from llamaman.downloads.hub import RepoSnapshot
from llamaman.downloads.names import (
    DEFAULT_QUANT,
    DEFAULT_TAG,
    cache_name,
    check_filename,
    inside,
    is_mmproj,
    matches_tag,
    repo_dir,
    shard_siblings,
    sibling_shard_path,
)
from llamaman.errors import Invalid
from llamaman.models.scanner import SHARD_RE

PRESET_FILE = "preset.ini"
MAX_LISTED = 12


def plan_files(job: dict[str, Any], snapshot: RepoSnapshot, models_dir: Path, cache_dir: Path) -> list[dict]:
    """The files of a job with their destinations, sizes and expected sha256."""
    names = _requested_names(job, snapshot)
    dests = _destinations(job, names, models_dir, cache_dir)
    return [{"name": name, "dest": str(dest), "size": snapshot.files[name].size,
             "sha256": snapshot.files[name].sha256, "done": False}
            for name, dest in zip(names, dests, strict=True)]


def _requested_names(job: dict[str, Any], snapshot: RepoSnapshot) -> list[str]:
    names = sorted(name for name in snapshot.files if _safe_name(name))
    if job.get("kind") == "tag":
        return select_tag_files(names, job["tag"], job["repo_id"])
    filename = job.get("filename") or None
    if filename is None:
        if not names:
            raise DownloadFailed(f"repository {job['repo_id']} has no files")
        return names
    if filename not in snapshot.files:
        raise DownloadFailed(f"{filename!r} is not a file of {job['repo_id']} at {snapshot.commit[:12]}; "
                             f"it has: {_listing(names)}")
    return shard_siblings(filename, names)


def _safe_name(name: str) -> bool:
    """Paths the Hub lists are re-checked: a hostile listing cannot escape the destination."""
    try:
        return check_filename(name) is not None
    except Invalid:
        return False


def _destinations(job: dict[str, Any], names: list[str], models_dir: Path, cache_dir: Path) -> list[Path]:
    if job.get("layout") == "cache":
        return [inside(cache_dir, cache_dir / cache_name(job["repo_id"], name)) for name in names]
    if job.get("dest_path"):
        first = Path(job["dest_path"])
        rest = [sibling_shard_path(first, name) for name in names[1:]]
        return [inside(models_dir, path) for path in (first, *rest)]
    base = repo_dir(models_dir, job["repo_id"])
    return [inside(models_dir, base / PurePosixPath(name)) for name in names]


def select_tag_files(names: list[str], tag: str, repo_id: str) -> list[str]:
    """The GGUF (all shards) of a quantization tag, plus mmproj and preset.ini when present.

    `latest` picks Q4_K_M when the repo has it, else the first GGUF in name order.
    """
    models = sorted(n for n in names if n.lower().endswith(".gguf") and not is_mmproj(n))
    if not models:
        raise DownloadFailed(f"repository {repo_id} has no GGUF model files")
    wanted = DEFAULT_QUANT if tag.lower() == DEFAULT_TAG else tag
    candidates = [n for n in models if matches_tag(n, wanted)]
    if not candidates and tag.lower() == DEFAULT_TAG:
        candidates = models
    if not candidates:
        raise DownloadFailed(f"no GGUF file for tag {tag!r} in {repo_id}; it has: {_listing(models)}")
    chosen = shard_siblings(_first_part(candidates), names)
    extras = [m for m in [_pick_mmproj(names, wanted)] if m]
    if PRESET_FILE in names:
        extras.append(PRESET_FILE)
    return chosen + extras


def _first_part(candidates: list[str]) -> str:
    """Prefer the first shard of a split model over later parts."""
    for name in candidates:
        match = SHARD_RE.match(PurePosixPath(name).name)
        if not match or int(match["index"]) == 1:
            return name
    return candidates[0]


def _pick_mmproj(names: list[str], tag: str) -> str | None:
    projectors = sorted(n for n in names if is_mmproj(n))
    for prefer in (tag, "f16"):
        for name in projectors:
            if matches_tag(name, prefer):
                return name
    return projectors[0] if projectors else None


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" … ({len(names)} files)" if len(names) > MAX_LISTED else "") if names else "no files"
