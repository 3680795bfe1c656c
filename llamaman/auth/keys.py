"""API keys: created once, stored as a hash, listed by prefix, scoped inference or admin."""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from llamaman.auth.guard import ANONYMOUS, Credential, Kind, bearer_token
from llamaman.errors import NotFound
from llamaman.storage.base import ApiKeyRepository, Record

SCOPES = ("inference", "admin")
TOKEN_PREFIX = "llm-"
_SHOWN_PREFIX_LEN = len(TOKEN_PREFIX) + 8
_MAX_TOKEN_LEN = 200
CACHE_TTL_S = 1.0


def hash_token(token: str) -> str:
    """SHA-256 of a key; keys are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def public_view(record: Record) -> Record:
    """What the API may show of a key: never the hash."""
    return {
        "id": record["id"],
        "name": record.get("name", ""),
        "prefix": record.get("prefix", ""),
        "scope": scope_of(record),
        "created_at": iso_time(record.get("created_at")),
    }


def iso_time(value: object) -> object:
    """An epoch as LlamaMan 1.2.1 shows a key's time ('2026-12-06T20:50:29.159Z'); else as stored."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    moment = datetime.fromtimestamp(value, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def scope_of(record: Record) -> str:
    """The key's scope; keys from before scopes existed are admin keys."""
    scope = record.get("scope")
    return scope if scope in SCOPES else "admin"


class ApiKeyService:
    """Keys with a short-lived lookup cache: the hot path (every proxied request) asks
    storage at most once a second; local changes clear it at once, other nodes' within 1 s."""

    def __init__(self, repo: ApiKeyRepository, clock: Callable[[], float] = time.monotonic) -> None:
        self.repo = repo
        self.clock = clock
        self._by_hash: dict[str, Record] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def create(self, name: str, scope: str, created_by: str | None) -> tuple[Record, str]:
        """Create a key; returns (public view, the full token shown once)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = {
            "id": uuid.uuid4().hex,
            "name": name,
            "scope": scope,
            "prefix": token[:_SHOWN_PREFIX_LEN],
            "hash": hash_token(token),
            "created_at": time.time(),
            "created_by": created_by,
        }
        self.repo.put(record["id"], record)
        self._invalidate()
        return public_view(record), token

    def list(self) -> list[Record]:
        keys = sorted(self.repo.list(), key=lambda r: r.get("created_at") or 0)
        return [public_view(r) for r in keys]

    def revoke(self, key_id: str) -> None:
        deleted = self.repo.delete(key_id)
        self._invalidate()
        if not deleted:
            raise NotFound(f"API key '{key_id}' not found")

    def authenticate(self, token: str) -> Record | None:
        """Return the key record matching a presented token, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LEN:
            return None
        return self._keys().get(hash_token(token))

    def _keys(self) -> dict[str, Record]:
        with self._lock:
            if self.clock() - self._loaded_at > CACHE_TTL_S:
                self._by_hash = {r["hash"]: r for r in self.repo.list() if r.get("hash")}
                self._loaded_at = self.clock()
            return self._by_hash

    def _invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def credential(self, authorization: str | None, api_key: str | None = None) -> Credential | None:
        """The credential of an `Authorization: Bearer` header, else of an `X-API-Key` header (Solar
        Host's convention, same keys and scopes); None when the request carries neither."""
        token = bearer_token(authorization)
        if token is None:
            token = api_key.strip() if api_key is not None else None
        if token is None:
            return None
        record = self.authenticate(token) if token else None
        if record is None:
            return Credential(Kind.BAD_KEY)
        return Credential(Kind.KEY, scope=scope_of(record), subject=record["id"])


def header_credential(keys: ApiKeyService, environ: dict) -> Credential:
    """The credential of a WSGI request that has no session (instance ports)."""
    return keys.credential(environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_X_API_KEY")) or ANONYMOUS
