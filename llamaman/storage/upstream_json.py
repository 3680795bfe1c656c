"""One-time import of a LlamaMan 1.2.1 DATA_DIR (JSON backend) into our file forms.

Before any file changes, upstream's files are copied byte for byte into
DATA_DIR/backup-llamaman-1.2.1-<UTC time>/ (written under a temporary name and renamed, so
a backup directory is always complete). Each file is then converted by an atomic replace, so
every file is at all times in upstream's form or ours; a start after a crash finishes the
files still in upstream's form and keeps the first backup. Request-log files stay as they are
(our reader reads upstream's form), so they are not copied.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamaman.errors import StorageError
from llamaman.storage import upstream
from llamaman.storage._common import node_key
from llamaman.storage._jsonfile import FileLock, atomic_write, dumps, fsync_dir

log = logging.getLogger(__name__)

BACKUP_PREFIX = f"backup-{upstream.VERSION}-"
COMPLETE_MARK = ".complete"
FILES = ("state.json", "presets.json", "users.json", "settings.json", "api_keys.json",
         "subprocess_settings.json")


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # not ours to judge here: the backend reports unreadable files itself


def _is_upstream_state(doc: Any) -> bool:
    return isinstance(doc, dict) and any(isinstance(doc.get(s), list) for s in ("instances", "downloads"))


def _is_upstream_users(doc: Any) -> bool:
    # Upstream's users are keyed by username and have a password_hash but no id.
    return isinstance(doc, dict) and any(
        isinstance(u, dict) and "id" not in u and "password_hash" in u and u.get("username") == k
        for k, u in doc.items())


def _is_upstream_presets(doc: Any) -> bool:
    # Our keys start with the quoted node name, which never starts with "/".
    return isinstance(doc, dict) and any(k.startswith("/") for k in doc)


DETECTORS: dict[str, Callable[[Any], bool]] = {
    "state.json": _is_upstream_state,
    "users.json": _is_upstream_users,
    "api_keys.json": lambda doc: isinstance(doc, list),
    "presets.json": _is_upstream_presets,
    "settings.json": upstream.is_upstream_settings,
}


def pending(data_dir: Path) -> list[str]:
    """Names of the files still in upstream's form."""
    return [name for name, test in DETECTORS.items() if test(_load(data_dir / name))]


def find_backup(data_dir: Path) -> Path | None:
    """The complete backup of an earlier (maybe interrupted) import, if any."""
    done = sorted(p.parent for p in data_dir.glob(f"{BACKUP_PREFIX}*/{COMPLETE_MARK}"))
    return done[0] if done else None


def make_backup(data_dir: Path) -> Path:
    """Copy upstream's files into a new, complete backup directory; return it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    final = data_dir / f"{BACKUP_PREFIX}{stamp}"
    partial = data_dir / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for name in FILES:
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, partial / name)
    (partial / COMPLETE_MARK).write_text(upstream.VERSION + "\n")
    for path in partial.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    fsync_dir(partial)
    os.rename(partial, final)
    fsync_dir(data_dir)
    return final


def migrate(data_dir: Path, node: str, domain: upstream.DomainRecords | None) -> Path | None:
    """Import upstream's files when there are any; return the backup directory used."""
    todo = pending(data_dir)
    if not todo:
        return None
    if domain is None:
        raise StorageError(f"{data_dir} holds LlamaMan 1.2.1 files {todo}; open the storage with "
                           "llamaman.dropin's records to import them. Nothing was changed.")
    backup = find_backup(data_dir) or make_backup(data_dir)
    log.warning("importing LlamaMan 1.2.1 files %s; originals kept in %s", todo, backup)
    for name in todo:
        CONVERTERS[name](data_dir, node, domain)
    return backup


def _rewrite(data_dir: Path, name: str, fn: Callable[[Any], dict]) -> None:
    """Atomically replace a file with fn(its document), under the JSON backend's file lock."""
    path = data_dir / name
    with FileLock(path.with_name(path.name + ".lock")).hold():
        atomic_write(path, dumps(fn(_load(path))))


def _convert_state(data_dir: Path, node: str, domain: upstream.DomainRecords) -> None:
    def convert(doc: dict) -> dict:
        out = dict(doc)
        for section, fn in (("instances", domain.instance), ("downloads", upstream.download)):
            items = doc.get(section)
            if isinstance(items, list):
                out[section] = {}
                for item in items:
                    record = fn(item, node)
                    out[section][node_key(record["node"], record["id"])] = record
        return out

    _rewrite(data_dir, "state.json", convert)


def _convert_users(data_dir: Path, node: str, domain: upstream.DomainRecords) -> None:
    def convert(doc: dict) -> dict:
        out = {}
        for key, record in doc.items():
            record = upstream.user(record) if isinstance(record, dict) and "id" not in record else record
            out[record["id"] if isinstance(record, dict) else key] = record
        return out

    _rewrite(data_dir, "users.json", convert)


def _convert_presets(data_dir: Path, node: str, domain: upstream.DomainRecords) -> None:
    def convert(doc: dict) -> dict:
        out = {}
        for key, record in doc.items():
            if key.startswith("/") and isinstance(record, dict):
                out[node_key(node, key)] = {**domain.preset(key, record), "node": node}
            else:
                out[key] = record
        return out

    _rewrite(data_dir, "presets.json", convert)


def _convert_settings(data_dir: Path, node: str, domain: upstream.DomainRecords) -> None:
    glob, nodes = upstream.settings(_load(data_dir / "settings.json"))
    domain.sidecars(glob.get("model_sources"))
    # Node documents first: were the process to stop here, settings.json is still upstream's.
    _rewrite(data_dir, "node_settings.json", lambda doc: _merge_nodes(doc or {}, nodes))
    _rewrite(data_dir, "settings.json", lambda _doc: glob)


def _merge_nodes(doc: dict, nodes: dict[str, dict]) -> dict:
    return {**doc, **{name: {**doc.get(name, {}), **values} for name, values in nodes.items()}}


def _convert_api_keys(data_dir: Path, node: str, domain: upstream.DomainRecords) -> None:
    def convert(keys: list) -> dict:
        records = [upstream.api_key(r) for r in keys
                   if isinstance(r, dict) and r.get("key_hash") and r.get("id")]
        return {r["id"]: r for r in records}

    _rewrite(data_dir, "api_keys.json", convert)


CONVERTERS: dict[str, Callable[[Path, str, upstream.DomainRecords], None]] = {
    "state.json": _convert_state,
    "users.json": _convert_users,
    "presets.json": _convert_presets,
    "settings.json": _convert_settings,
    "api_keys.json": _convert_api_keys,
}
