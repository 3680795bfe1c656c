"""Flask-login wiring and the before_request hook that applies the guard on :5000 and :42069."""
from __future__ import annotations

from urllib.parse import quote

from flask import Flask, g, redirect, request, session
from flask_login import LoginManager, UserMixin, current_user
from werkzeug.exceptions import NotFound

from llamaman.auth.guard import (
    ANONYMOUS,
    CSRF_FIELD,
    CSRF_HEADER,
    METRICS_PATH,
    SAFE_METHODS,
    Access,
    Credential,
    Kind,
    check_csrf,
    classify,
    decide,
    session_authorised,
)
from llamaman.errors import Unauthorized
from llamaman.webio import services

_FORM_POSTS = frozenset({"/login", "/setup"})


class User(UserMixin):
    def __init__(self, record: dict) -> None:
        self.id = record["id"]
        self.username = record["username"]
        self.role = record.get("role", "admin")


def init_auth(app: Flask) -> None:
    """Install flask-login and the access guard."""
    manager = LoginManager()
    manager.init_app(app)

    @manager.user_loader
    def load_user(user_id: str) -> User | None:
        record = services().users.get(user_id)
        return User(record) if record else None

    app.before_request(guard_request)


def guard_request():
    """Authenticate the request and enforce the access rules and CSRF."""
    svc = services()
    access = classify(request.path, ollama_root_open=on_proxy_port(), metrics_open=metrics_open())
    if access is Access.OPEN:
        if request.method == "POST" and request.path in _FORM_POSTS:
            check_csrf(session, presented_csrf())
        return None
    if isinstance(request.routing_exception, NotFound):
        return None  # a route that does not exist is 404 whoever asks; nothing is behind it to guard
    cred = identify()
    require_auth = svc.settings.require_auth() if access is Access.MODEL else True
    try:
        decide(access, cred, require_auth)
    except Unauthorized:
        if is_page_request(access):
            return redirect_to_login()
        raise
    if request.method not in SAFE_METHODS and session_authorised(access, cred, require_auth):
        check_csrf(session, presented_csrf())
    g.credential = cred
    return None


def identify() -> Credential:
    """Who is calling: a bearer key (valid or not), a logged-in session, or nobody."""
    cred = services().api_keys.credential(request.headers.get("Authorization"), request.headers.get("X-API-Key"))
    if cred is not None:
        return cred
    if current_user.is_authenticated:
        return Credential(Kind.SESSION, scope="admin", subject=current_user.id)
    return ANONYMOUS


def metrics_open() -> bool:
    """True for a /metrics request while the "metrics_open" setting is on."""
    return request.path == METRICS_PATH and bool(services().settings.get()["metrics_open"])


def current_credential() -> Credential:
    return g.get("credential", ANONYMOUS)


def presented_csrf() -> str | None:
    return request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)


def on_proxy_port() -> bool:
    """True when the request arrived on the Ollama/OpenAI port (:42069)."""
    return request.environ.get("SERVER_PORT") == str(services().config.proxy_port)


_API_PREFIXES = ("/api/", "/instances")  # Solar Host's REST paths answer 401, not the login page


def is_page_request(access: Access) -> bool:
    return (access is Access.MANAGEMENT and request.method in SAFE_METHODS
            and not request.path.startswith(_API_PREFIXES) and request.path != METRICS_PATH
            and not request.is_json
            and request.headers.get("Upgrade", "").lower() != "websocket")  # sockets get a 401, not the login page


def redirect_to_login():
    if services().users.needs_setup():
        return redirect("/setup")
    return redirect("/login?next=" + quote(request.full_path.rstrip("?"), safe="/"))
