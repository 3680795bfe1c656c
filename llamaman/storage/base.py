"""Repository protocols shared by every storage backend.

Records are plain JSON-compatible dicts. Every backend passes the same contract
suite (tests/integration/test_storage_contract.py).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Record = dict[str, Any]
Mutator = Callable[[Record | None], Record | None]


class Collection(Protocol):
    """Records keyed by a string id; node-scoped collections see only their node."""

    def get(self, key: str) -> Record | None:
        """Return the record stored under key, or None."""

    def list(self) -> list[Record]:
        """Return every record (of this node, for node-scoped collections)."""

    def put(self, key: str, record: Record) -> None:
        """Insert or replace the record stored under key."""

    def delete(self, key: str) -> bool:
        """Remove the record; True when it existed."""

    def update(self, key: str, fn: Mutator) -> Record | None:
        """Atomically replace the record with fn(current); fn returning None deletes it."""


class UserRepository(Collection, Protocol):
    def get_by_username(self, username: str) -> Record | None:
        """Return the user with this (case-insensitive) username, or None."""

    def count(self) -> int:
        """Return the number of users."""

    def add(self, key: str, record: Record, *, only_if_empty: bool = False) -> bool:
        """Insert a new user. False when only_if_empty and a user exists already.

        Raises Conflict when the username (case-insensitive) is taken.
        """


class ApiKeyRepository(Collection, Protocol):
    def find_by_hash(self, key_hash: str) -> Record | None:
        """Return the key record whose 'hash' field equals key_hash, or None."""


class SettingsRepository(Protocol):
    def get(self, scope: str = "global") -> Record:
        """Return the settings document of a scope ({} when never saved)."""

    def update(self, scope: str, fn: Callable[[Record], Record]) -> Record:
        """Atomically replace the scope's document with fn(current)."""


class RequestLogRepository(Protocol):
    def append(self, record: Record) -> None:
        """Store one request record (must carry 'id', 'ts', 'conversation_id')."""

    def query(
        self,
        *,
        since: float | None = None,
        inst_id: str | None = None,
        conversation_id: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Return matching records, oldest first (the newest `limit` when limited)."""

    def prune(self, older_than: float) -> int:
        """Delete records with ts < older_than; return how many were removed."""


class Storage(Protocol):
    instances: Collection  # node-scoped
    downloads: Collection  # node-scoped
    presets: Collection  # node-scoped, keyed by model path
    users: UserRepository
    api_keys: ApiKeyRepository
    settings: SettingsRepository
    request_log: RequestLogRepository
    nodes: Collection  # cluster registry, keyed by node name

    def open(self, domain: Any = None) -> None:
        """Connect / create files and tables / run migrations; `domain` (a
        storage.upstream.DomainRecords) lets it import LlamaMan 1.2.1 data found there."""

    def close(self) -> None:
        """Release connections and file handles."""
