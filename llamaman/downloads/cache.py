"""The llamactl model cache: one manifest per downloaded (repo, tag), listing its cached files.

Manifests are `manifest={org}={model}={tag}.json` next to the `{org}_{model}_{filename}` files.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llamaman.downloads.names import check_repo_id
from llamaman.errors import Conflict, NotFound

MANIFEST_PREFIX = "manifest="
MAX_MANIFESTS = 10_000
MAX_MANIFEST_BYTES = 1 << 20


def manifest_path(cache_dir: Path, repo_id: str, tag: str) -> Path:
    org, model = check_repo_id(repo_id).split("/")
    return cache_dir / f"{MANIFEST_PREFIX}{org}={model}={tag}.json"


def write_manifest(cache_dir: Path, repo_id: str, tag: str, commit: str, files: list[dict]) -> Path:
    """Record which cached files belong to a (repo, tag), atomically."""
    body = {"repo": repo_id, "tag": tag, "commit": commit, "downloaded_at": time.time(),
            "files": [{"name": Path(f["dest"]).name, "repo_path": f["name"], "size": f["size"],
                       "sha256": f["sha256"]} for f in files]}
    target = manifest_path(cache_dir, repo_id, tag)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".manifest-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def list_cached(cache_dir: Path) -> list[dict[str, Any]]:
    """llamactl's listing: every cached (repo, tag) with its files present on disk."""
    return [_listing(cache_dir, manifest) for _, manifest in _manifests(cache_dir)]


def delete_cached(cache_dir: Path, repo_id: str, tag: str | None, busy: Iterable[str] = ()) -> dict[str, Any]:
    """Delete the cached files of a repo (one tag, or every tag); refused while a file is in use."""
    check_repo_id(repo_id)
    chosen = [(path, m) for path, m in _manifests(cache_dir)
              if m.get("repo") == repo_id and (tag is None or str(m.get("tag", "")).lower() == tag.lower())]
    if not chosen:
        raise NotFound(f"no cached model {repo_id}" + (f":{tag}" if tag else ""))
    files = [cache_dir / f["name"] for _, m in chosen for f in _files(m)]
    in_use = {os.path.realpath(p) for p in busy}
    used = [str(f) for f in files if os.path.realpath(f) in in_use]
    if used:
        raise Conflict(f"a running instance uses {used[0]}; stop it first", paths=used)
    deleted = []
    for path in files:
        for victim in (path, path.with_name(path.name + ".llamaman.json")):
            if victim.is_file():
                victim.unlink()
                if victim == path:
                    deleted.append(str(path))
    for manifest_file, _ in chosen:
        manifest_file.unlink(missing_ok=True)
    return {"repo": repo_id, "tag": tag, "deleted": deleted}


def _manifests(cache_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    found: list[tuple[Path, dict[str, Any]]] = []
    try:
        entries = sorted(e for e in os.listdir(cache_dir) if e.startswith(MANIFEST_PREFIX) and e.endswith(".json"))
    except FileNotFoundError:
        return found
    for name in entries[:MAX_MANIFESTS]:
        path = cache_dir / name
        try:
            if path.stat().st_size <= MAX_MANIFEST_BYTES:
                data = json.loads(path.read_text())
                if isinstance(data, dict) and isinstance(data.get("repo"), str):
                    found.append((path, data))
        except (OSError, ValueError):
            continue
    return found


def _files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's file entries whose names are plain names inside the cache."""
    entries = manifest.get("files") if isinstance(manifest.get("files"), list) else []
    return [f for f in entries if isinstance(f, dict) and isinstance(f.get("name"), str)
            and f["name"] not in ("", ".", "..") and "/" not in f["name"] and "\\" not in f["name"]]


def _listing(cache_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    files = []
    for entry in _files(manifest):
        path = cache_dir / entry["name"]
        try:
            stat = path.stat()
        except OSError:
            continue
        files.append({"name": entry["name"], "path": str(path), "size": stat.st_size,
                      "modified": int(stat.st_mtime)})
    return {"repo": manifest["repo"], "tag": manifest.get("tag"), "files": files,
            "total_size": sum(f["size"] for f in files), "file_count": len(files)}
