"""JSON-file storage backend: the zero-configuration default.

Files under DATA_DIR follow the LlamaMan README: state.json ({"instances", "downloads"}),
presets.json, users.json, settings.json (the global document), api_keys.json, plus
node_settings.json (per-node overrides by node name) and nodes.json (cluster registry).
Node-scoped records are stored under "<quoted node>/<id>" with a "node" field.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llamaman.errors import Conflict
from llamaman.storage import upstream_json
from llamaman.storage._common import (
    GLOBAL_SCOPE,
    CollectionSettings,
    check_key,
    check_record,
    node_key,
    node_prefix,
    stamp_node,
    username_key,
)
from llamaman.storage._jsonfile import JsonDocument, clone
from llamaman.storage.base import Mutator, Record
from llamaman.storage.json_request_log import JsonRequestLog
from llamaman.storage.upstream import DomainRecords


class JsonRepository:
    """A collection stored in one JSON document (or one section of it)."""

    def __init__(
        self, doc: JsonDocument, *, section: str | None = None, node: str | None = None
    ) -> None:
        self.doc = doc
        self.section = section
        self.node = node

    def get(self, key: str) -> Record | None:
        """Return the record stored under key, or None."""
        record = self._entries(self.doc.peek()).get(self._stored_key(key))
        return clone(record) if record is not None else None

    def list(self) -> list[Record]:
        """Return every record (of this node, for node-scoped collections)."""
        entries = self._entries(self.doc.peek())
        return [clone(r) for k, r in entries.items() if self._owns(k)]

    def put(self, key: str, record: Record) -> None:
        """Insert or replace the record stored under key."""
        check_record(record)
        self.update(key, lambda _current: record)

    def delete(self, key: str) -> bool:
        """Remove the record; True when it existed."""
        stored = self._stored_key(key)
        return self.doc.transact(lambda data: self._entries(data).pop(stored, None) is not None)

    def update(self, key: str, fn: Mutator) -> Record | None:
        """Atomically replace the record with fn(current); fn returning None deletes it."""
        stored = self._stored_key(key)

        def apply(data: dict) -> Record | None:
            new = fn(self._entries(data).get(stored))
            if new is None:
                self._entries(data).pop(stored, None)
                return None
            entries = self._entries(data, create=True)
            self._place(entries, stored, stamp_node(new, self.node))
            return clone(entries[stored])

        return self.doc.transact(apply)

    def adopt_legacy(self) -> int:
        """Re-key records written without this layout's node prefix; return how many."""
        if self.node is None:
            return 0
        return self.doc.transact(lambda data: _adopt(self._entries(data), self.node))

    def _place(self, entries: dict, stored: str, record: Record) -> None:
        """Store record under stored key; subclasses validate uniqueness here."""
        entries[stored] = record

    def _entries(self, data: dict, *, create: bool = False) -> dict:
        if self.section is None:
            return data
        entries = data.get(self.section)
        if not isinstance(entries, dict):
            entries = {}
            if create:
                data[self.section] = entries
        return entries

    def _stored_key(self, key: str) -> str:
        check_key(key)
        return key if self.node is None else node_key(self.node, key)

    def _owns(self, stored: str) -> bool:
        return self.node is None or stored.startswith(node_prefix(self.node))


def _adopt(entries: dict, node: str) -> int:
    """Move node-less (single-node LlamaMan) entries under their node's prefix."""
    moved = 0
    for key, record in list(entries.items()):
        if not isinstance(record, dict):
            continue
        owner = record.get("node") if isinstance(record.get("node"), str) else node
        if not key.startswith(node_prefix(owner)):
            del entries[key]
            entries[node_key(owner, key)] = {**record, "node": owner}
            moved += 1
    return moved


class JsonUserRepository(JsonRepository):
    """User accounts in users.json; usernames are unique case-insensitively."""

    def get_by_username(self, username: str) -> Record | None:
        """Return the user with this (case-insensitive) username, or None."""
        needle = username.lower()
        for record in self.doc.peek().values():
            if _username_of(record) == needle:
                return clone(record)
        return None

    def count(self) -> int:
        """Return the number of users."""
        return len(self.doc.peek())

    def add(self, key: str, record: Record, *, only_if_empty: bool = False) -> bool:
        """Insert a new user. False when only_if_empty and a user exists already."""
        stored = self._stored_key(key)
        check_record(record)

        def apply(entries: dict) -> bool:
            if only_if_empty and entries:
                return False
            if stored in entries:
                raise Conflict(f"user {key!r} already exists")
            self._place(entries, stored, dict(record))
            return True

        return self.doc.transact(apply)

    def _place(self, entries: dict, stored: str, record: Record) -> None:
        name = username_key(record)
        for other_key, other in entries.items():
            if other_key != stored and _username_of(other) == name:
                raise Conflict(f"username {record['username']!r} is taken")
        entries[stored] = record


def _username_of(record: object) -> str | None:
    """Return a stored user's lower-cased username, None for malformed entries."""
    name = record.get("username") if isinstance(record, dict) else None
    return name.lower() if isinstance(name, str) else None


class JsonApiKeyRepository(JsonRepository):
    """API key records (hashed) in api_keys.json."""

    def find_by_hash(self, key_hash: str) -> Record | None:
        """Return the key record whose 'hash' field equals key_hash, or None."""
        for record in self.doc.peek().values():
            if isinstance(record, dict) and record.get("hash") == key_hash:
                return clone(record)
        return None


class JsonSettingsRepository:
    """Global settings in settings.json (LlamaMan's flat format), node scopes beside it."""

    def __init__(self, global_doc: JsonDocument, node_doc: JsonDocument) -> None:
        self._global = global_doc
        self._scopes = CollectionSettings(JsonRepository(node_doc))

    def get(self, scope: str = GLOBAL_SCOPE) -> Record:
        """Return the settings document of a scope ({} when never saved)."""
        return self._global.read() if scope == GLOBAL_SCOPE else self._scopes.get(scope)

    def update(self, scope: str, fn: Callable[[Record], Record]) -> Record:
        """Atomically replace the scope's document with fn(current)."""
        if scope != GLOBAL_SCOPE:
            return self._scopes.update(scope, fn)

        def apply(data: dict) -> Record:
            new = check_record(clone(fn(data) or {}))
            data.clear()
            data.update(new)
            return clone(new)

        return self._global.transact(apply)


class JsonStorage:
    """Storage on JSON files under data_dir and JSON-lines files under recordings_dir."""

    def __init__(self, *, node: str, data_dir: Path, recordings_dir: Path) -> None:
        self.node = node
        self.data_dir = Path(data_dir)
        docs = {name: JsonDocument(self.data_dir / f"{name}.json") for name in _FILES}
        self._docs = list(docs.values())
        self.instances = JsonRepository(docs["state"], section="instances", node=node)
        self.downloads = JsonRepository(docs["state"], section="downloads", node=node)
        self.presets = JsonRepository(docs["presets"], node=node)
        self.users = JsonUserRepository(docs["users"])
        self.api_keys = JsonApiKeyRepository(docs["api_keys"])
        self.settings = JsonSettingsRepository(docs["settings"], docs["node_settings"])
        self.nodes = JsonRepository(docs["nodes"])
        self.request_log = JsonRequestLog(Path(recordings_dir))

    def open(self, domain: DomainRecords | None = None) -> None:
        """Create the directories, drop crashed writers' temp files, adopt legacy records."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        upstream_json.migrate(self.data_dir, self.node, domain)  # a LlamaMan 1.2.1 DATA_DIR, once
        for doc in self._docs:
            doc.cleanup()
        for repo in (self.instances, self.downloads, self.presets):
            repo.adopt_legacy()
        self.request_log.open()

    def close(self) -> None:
        """Nothing to release: locks and files are held only during an operation."""

    def __repr__(self) -> str:
        return f"JsonStorage(node={self.node!r}, data_dir={str(self.data_dir)!r})"


_FILES: tuple[str, ...] = (
    "state", "presets", "users", "settings", "node_settings", "api_keys", "nodes"
)
