"""Setup, login, logout pages and the API key endpoints."""
from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, session
from flask_login import login_user, logout_user

from llamaman.auth.guard import Kind, csrf_token
from llamaman.auth.keys import SCOPES
from llamaman.auth.session import User, current_credential
from llamaman.errors import Forbidden, LlamamanError
from llamaman.validation import get_choice, get_str
from llamaman.webio import form_or_json, json_body, services, wants_json

bp = Blueprint("auth", __name__)


@bp.get("/setup")
def setup_page():
    if not services().users.needs_setup():
        return redirect("/login")
    return render_template("setup.html", csrf=csrf_token(session))


@bp.post("/setup")
def setup_submit():
    try:
        user = services().users.create_first_admin(form_or_json())
    except LlamamanError as err:
        return _form_error("setup.html", err)
    login_user(User(user))
    if wants_json():
        return jsonify({"ok": True, "username": user["username"]}), 201
    return redirect("/")


@bp.get("/login")
def login_page():
    if services().users.needs_setup():
        return redirect("/setup")
    return render_template("login.html", csrf=csrf_token(session), next=_safe_next())


@bp.post("/login")
def login_submit():
    try:
        user = services().users.authenticate(form_or_json(), client=request.remote_addr or "?")
    except LlamamanError as err:
        return _form_error("login.html", err)
    login_user(User(user))
    if wants_json():
        return jsonify({"ok": True, "username": user["username"]})
    return redirect(_safe_next())


@bp.get("/logout")
def logout():
    logout_user()
    return redirect("/login")


@bp.get("/api/api-keys")
def list_keys():
    _require_session()
    return jsonify(services().api_keys.list())


@bp.post("/api/api-keys")
def create_key():
    cred = _require_session()
    body = json_body()
    name = get_str(body, "name", required=True, allow_empty=False)
    # No scope: admin, as every LlamaMan 1.2.1 key was, so its scripts keep working; the UI
    # always sends the scope the person picked (inference preselected).
    scope = get_choice(body, "scope", SCOPES, default="admin")
    view, token = services().api_keys.create(name, scope, created_by=cred.subject)
    return jsonify({**view, "key": token}), 201


@bp.delete("/api/api-keys/<key_id>")
def revoke_key(key_id: str):
    _require_session()
    services().api_keys.revoke(key_id)
    return jsonify({"ok": True})


def _require_session():
    cred = current_credential()
    if cred.kind is not Kind.SESSION:
        raise Forbidden("managing API keys requires a logged-in browser session")
    return cred


def _safe_next() -> str:
    """The post-login target; only local paths, so the login page is no open redirect."""
    target = request.args.get("next") or request.form.get("next") or "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _form_error(template: str, err: LlamamanError):
    if wants_json():
        raise err
    page = render_template(template, csrf=csrf_token(session), error=err.message, next=_safe_next())
    return page, err.status
