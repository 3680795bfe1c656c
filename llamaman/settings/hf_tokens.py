"""Saved HuggingFace tokens (LlamaMan 1.2.1's `/api/settings/huggingface-tokens`).

Kept in the shared settings document under `huggingface_tokens`, in upstream's own form
({id, name, token, created_at}), so an imported list and one made here are the same thing and
LlamaMan can still read it after a rollback. A download names one by `hf_token_id`. The secret
is only ever returned as a preview.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from llamaman.errors import Invalid, NotFound
from llamaman.settings.upstream_keys import token_view
from llamaman.storage.base import SettingsRepository
from llamaman.validation import get_str, require_object

KEY = "huggingface_tokens"
MAX_TOKENS = 100


class HfTokens:
    """List, add and delete saved tokens; look a secret up by id for the download manager."""

    def __init__(self, repo: SettingsRepository) -> None:
        self.repo = repo

    def list(self) -> list[dict[str, Any]]:
        """Every saved token as {id, name, preview, created_at}."""
        return [token_view(t) for t in self._stored()]

    def add(self, body: Any) -> dict[str, Any]:
        """Save a token ({"name", "token"}); the name defaults to "Untitled" as upstream's did."""
        body = require_object(body)
        token = (get_str(body, "token", default="", max_len=512) or "").strip()
        if not token or any(ch.isspace() for ch in token) or not token.isascii():
            raise Invalid("'token' is required: a HuggingFace access token (no spaces)", field="token")
        name = (get_str(body, "name", default="", max_len=128) or "").strip() or "Untitled"
        entry = {"id": uuid.uuid4().hex, "name": name, "token": token, "created_at": int(time.time())}
        self.repo.update("global", lambda doc: {**doc, KEY: _appended(doc, entry)})
        return token_view(entry)

    def delete(self, token_id: str) -> None:
        """Forget a saved token; NotFound when no token has this id."""
        found: list[bool] = []

        def drop(doc: dict) -> dict:
            tokens = doc.get(KEY) if isinstance(doc.get(KEY), list) else []
            kept = [t for t in tokens if not (isinstance(t, dict) and t.get("id") == token_id)]
            found.append(len(kept) != len(tokens))
            return {**doc, KEY: kept} if found[-1] else doc
        self.repo.update("global", drop)
        if not found[-1]:
            raise NotFound(f"no saved HuggingFace token with id {token_id}")

    def secret(self, token_id: str) -> str | None:
        """The full token saved under this id, or None."""
        return next((t["token"] for t in self._stored() if t.get("id") == token_id), None)

    def _stored(self) -> list[dict[str, Any]]:
        return _tokens_of(self.repo.get("global"))


def _tokens_of(doc: dict) -> list[dict[str, Any]]:
    return [t for t in doc.get(KEY) or [] if isinstance(t, dict) and t.get("id") and t.get("token")]


def _appended(doc: dict, entry: dict[str, Any]) -> list[dict[str, Any]]:
    tokens = _tokens_of(doc)
    if len(tokens) >= MAX_TOKENS:
        raise Invalid(f"at most {MAX_TOKENS} HuggingFace tokens can be saved", field="token")
    return [*tokens, entry]
