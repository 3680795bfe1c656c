"""Record rules shared by every storage backend."""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from llamaman.errors import Invalid
from llamaman.storage.base import Collection, Record

GLOBAL_SCOPE = "global"
LOG_FIELDS = ("id", "ts", "conversation_id")
# Limits every backend enforces alike (they size the SQL backend's indexed columns).
MAX_KEY_LEN = 512
MAX_NAME_LEN = 191


def check_key(key: str) -> str:
    """Return key when it is a non-empty string of at most MAX_KEY_LEN, else raise Invalid."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LEN:
        raise Invalid(f"record key must be a string of 1 to {MAX_KEY_LEN} characters")
    return key


def check_name(value: object, what: str, *, optional: bool = False) -> None:
    """Raise Invalid unless value is a string of 1 to MAX_NAME_LEN characters."""
    if optional and value is None:
        return
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LEN:
        raise Invalid(f"{what} must be a string of 1 to {MAX_NAME_LEN} characters")


def check_record(record: object) -> Record:
    """Return record when it is a dict, else raise Invalid."""
    if not isinstance(record, dict):
        raise Invalid("record must be a JSON object")
    return record


def node_key(node: str, key: str) -> str:
    """Compose the internal key of a node-scoped record; unambiguous for any node name."""
    return node_prefix(node) + key


def node_prefix(node: str) -> str:
    """Return the internal key prefix shared by every record of a node."""
    return quote(node, safe="") + "/"


def stamp_node(record: Record, node: str | None) -> Record:
    """Return record with its owning node recorded (unchanged when not node-scoped)."""
    check_record(record)
    return record if node is None else {**record, "node": node}


def username_key(record: Record) -> str:
    """Return the case-insensitive lookup key of a user record."""
    check_name(record.get("username"), "user 'username'")
    return record["username"].lower()


def check_log_record(record: object) -> Record:
    """Validate a request-log record (dict with 'id', numeric 'ts', 'conversation_id')."""
    check_record(record)
    missing = [f for f in LOG_FIELDS if record.get(f) in (None, "")]
    if missing:
        raise Invalid(f"request log record lacks {', '.join(missing)}")
    if isinstance(record["ts"], bool) or not isinstance(record["ts"], (int, float)):
        raise Invalid("request log 'ts' must be a number (epoch seconds)")
    check_name(record["id"], "request log 'id'")
    check_name(record["conversation_id"], "request log 'conversation_id'")
    check_name(record.get("inst_id"), "request log 'inst_id'", optional=True)
    return record


def log_matches(
    record: Record, since: float | None, inst_id: str | None, conversation_id: str | None
) -> bool:
    """Tell whether a request-log record passes the query filters."""
    return (
        (since is None or record["ts"] >= since)
        and (inst_id is None or record.get("inst_id") == inst_id)
        and (conversation_id is None or record["conversation_id"] == conversation_id)
    )


def newest(records: list[Record], limit: int | None) -> list[Record]:
    """Return the newest `limit` of records sorted oldest first (all when None)."""
    if limit is None:
        return records
    return records[-limit:] if limit > 0 else []


class CollectionSettings:
    """Settings documents kept as records of a collection keyed by scope."""

    def __init__(self, collection: Collection) -> None:
        self._collection = collection

    def get(self, scope: str = GLOBAL_SCOPE) -> Record:
        """Return the settings document of a scope ({} when never saved)."""
        return self._collection.get(check_key(scope)) or {}

    def update(self, scope: str, fn: Callable[[Record], Record]) -> Record:
        """Atomically replace the scope's document with fn(current)."""
        result = self._collection.update(check_key(scope), lambda cur: fn(cur or {}) or {})
        return result if result is not None else {}
