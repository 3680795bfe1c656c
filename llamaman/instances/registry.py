"""The one owner of instance records on this node: memory first, written through to storage.

Lock order: an instance's operation lock → a gate's lock (proxy/gate.py) → `_persist_lock`
→ `_lock` (innermost). No I/O happens under `_lock`; storage writes happen under
`_persist_lock` only.
"""
from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

from llamaman.errors import Conflict, NotFound
from llamaman.storage.base import Collection

log = logging.getLogger(__name__)
Record = dict[str, Any]


class InstanceRegistry:
    def __init__(self, repo: Collection) -> None:
        self.repo = repo
        self._records: dict[str, Record] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._persist_lock = threading.Lock()
        self._op_locks: dict[str, threading.Lock] = {}

    def load(self) -> list[Record]:
        """Read every record of this node from storage into memory."""
        records = self.repo.list()
        with self._lock:
            self._records = {r["id"]: r for r in records}
        return copy.deepcopy(records)

    def snapshot(self, instance_id: str) -> Record:
        """A copy of one record; NotFound when unknown."""
        with self._lock:
            record = self._records.get(instance_id)
            if record is None:
                raise NotFound(f"instance '{instance_id}' not found")
            return copy.deepcopy(record)

    def find(self, instance_id: str) -> Record | None:
        with self._lock:
            record = self._records.get(instance_id)
            return copy.deepcopy(record) if record is not None else None

    def all(self) -> list[Record]:
        with self._lock:
            return copy.deepcopy(list(self._records.values()))

    def values(self, field: str, where: Callable[[Record], bool]) -> list[Any]:
        """One field of every record matching where (cheap: no deep copies)."""
        with self._lock:
            return [r.get(field) for r in self._records.values() if where(r)]

    def insert(self, record: Record) -> None:
        with self._lock:
            self._records[record["id"]] = copy.deepcopy(record)
        self._persist(record["id"])

    def insert_named(self, record: Record) -> None:
        """Insert a record whose name no other record of this node has (Conflict otherwise)."""
        with self._lock:
            if any(r.get("name") == record["name"] for r in self._records.values()):
                raise Conflict(f"an instance named '{record['name']}' already exists", field="name")
            self._records[record["id"]] = copy.deepcopy(record)
        self._persist(record["id"])

    def ids_named(self, name: str) -> list[str]:
        """Ids of the records with this name (names are aliases; ids stay the key)."""
        with self._lock:
            return [r["id"] for r in self._records.values() if r.get("name") == name]

    def update(self, instance_id: str, changes: Record, *,
               when: Callable[[Record], bool] | None = None) -> bool:
        """Apply changes if the record exists and `when` accepts it; True when applied."""
        with self._lock:
            record = self._records.get(instance_id)
            if record is None or (when is not None and not when(record)):
                return False
            record.update(copy.deepcopy(changes))
            self._changed.notify_all()
        self._persist(instance_id)
        return True

    def wait_until(self, instance_id: str, done: Callable[[Record], bool], timeout: float) -> Record | None:
        """Block until done(record) holds (or the record is removed); None on timeout."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: instance_id not in self._records or done(self._records[instance_id]), timeout)
            record = self._records.get(instance_id)
            return copy.deepcopy(record) if ok and record is not None else None

    def select(self, where: Callable[[Record], bool], names: tuple[str, ...]) -> list[tuple]:
        """Some fields of every matching record, without copying records (hot-path reads)."""
        with self._lock:
            return [tuple(r.get(n) for n in names) for r in self._records.values() if where(r)]

    def fields(self, instance_id: str, names: tuple[str, ...]) -> tuple | None:
        """Some fields of one record without copying it all (the proxy's per-request read)."""
        with self._lock:
            record = self._records.get(instance_id)
            return tuple(record.get(n) for n in names) if record is not None else None

    def remove(self, instance_id: str) -> None:
        with self._lock:
            self._records.pop(instance_id, None)
            self._op_locks.pop(instance_id, None)
            self._changed.notify_all()
        self._persist(instance_id)

    def op_lock(self, instance_id: str) -> threading.Lock:
        """The lock that serialises start/stop/restart/remove of one instance."""
        with self._lock:
            return self._op_locks.setdefault(instance_id, threading.Lock())

    def _persist(self, instance_id: str) -> None:
        # Re-read under the persist lock, so the stored copy is always the newest one.
        with self._persist_lock:
            current = self.find(instance_id)
            try:
                if current is None:
                    self.repo.delete(instance_id)
                else:
                    self.repo.put(instance_id, current)
            except Exception:  # memory stays authoritative; the next change writes again
                log.exception("could not persist instance %s", instance_id)
