"""The one access decision for every port surface (UI/API, Ollama/OpenAI, instance proxies).

`classify` says what a path is; `decide` says whether a credential may use it.
Both are pure so the per-instance proxies reuse them unchanged.
"""
from __future__ import annotations

import enum
import hmac
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass

from llamaman.errors import Forbidden, Unauthorized


class Access(enum.Enum):
    OPEN = "open"
    MODEL = "model"
    MANAGEMENT = "management"


class Kind(enum.Enum):
    NONE = "none"
    SESSION = "session"
    KEY = "key"
    BAD_KEY = "bad_key"


@dataclass(frozen=True)
class Credential:
    kind: Kind
    scope: str | None = None
    subject: str | None = None  # user id or key id


ANONYMOUS = Credential(Kind.NONE)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_OPEN_PATHS = frozenset({"/health", "/login", "/setup", "/logout", "/favicon.ico"})
_MODEL_PATHS = frozenset({
    "/api/tags", "/api/version", "/api/show", "/api/ps", "/api/chat", "/api/generate",
    "/api/embed", "/api/embeddings", "/completion", "/completions", "/chat/completions",
    "/embedding", "/embeddings", "/backend/monitor", "/v1/backend/monitor",
})
_MANAGEMENT_UNDER_V1 = frozenset({"/v1/backend/shutdown"})
METRICS_PATH = "/metrics"


def classify(path: str, *, ollama_root_open: bool = False, metrics_open: bool = False) -> Access:
    """Say which access rules apply to a request path."""
    if path in _OPEN_PATHS or path.startswith("/static/"):
        return Access.OPEN
    if path == METRICS_PATH and metrics_open:
        return Access.OPEN  # the "metrics_open" setting lets Prometheus scrape without a key
    if path == "/" and ollama_root_open:
        return Access.OPEN  # Ollama clients probe "/" on the API port
    if path in _MODEL_PATHS or is_instance_proxy(path):
        return Access.MODEL
    if path.startswith("/v1/") and path not in _MANAGEMENT_UNDER_V1:
        return Access.MODEL
    return Access.MANAGEMENT


def is_instance_proxy(path: str) -> bool:
    """llamactl's /api/v1/instances/{name}/proxy/...: inference, so an inference key may use it."""
    parts = path.split("/", 6)
    return len(parts) >= 6 and parts[1:4] == ["api", "v1", "instances"] and parts[5] == "proxy"


def decide(access: Access, cred: Credential, require_auth: bool) -> None:
    """Raise Unauthorized/Forbidden unless cred may use an endpoint of this access class."""
    if access is Access.OPEN:
        return
    if access is Access.MODEL:
        if not require_auth or cred.kind in (Kind.SESSION, Kind.KEY):
            return
        raise Unauthorized(_unauthorized_message(cred))
    if cred.kind is Kind.SESSION or (cred.kind is Kind.KEY and cred.scope == "admin"):
        return
    if cred.kind is Kind.KEY:
        raise Forbidden("this API key has inference scope; management endpoints need an admin key")
    raise Unauthorized(_unauthorized_message(cred))


def session_authorised(access: Access, cred: Credential, require_auth: bool) -> bool:
    """True when the browser session (not a key) is what grants access: CSRF applies."""
    if cred.kind is not Kind.SESSION:
        return False
    return access is Access.MANAGEMENT or (access is Access.MODEL and require_auth)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an 'Authorization: Bearer …' header ('' for any other scheme)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _unauthorized_message(cred: Credential) -> str:
    if cred.kind is Kind.BAD_KEY:
        return "invalid or revoked API key"
    return "API key required (Authorization: Bearer llm-...)"


CSRF_SESSION_KEY = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def csrf_token(session: MutableMapping) -> str:
    """Return the session's CSRF token, creating it on first use."""
    token = session.get(CSRF_SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_SESSION_KEY] = token
    return token


def check_csrf(session: MutableMapping, presented: str | None) -> None:
    """Raise Forbidden unless the presented token matches the session's."""
    expected = session.get(CSRF_SESSION_KEY)
    if not expected or not presented or not hmac.compare_digest(expected, presented):
        raise Forbidden("missing or invalid CSRF token (send the X-CSRF-Token header)")
