"""Setup, login, sessions, CSRF, API keys and the require-auth toggle over real JSON storage."""
import json
import os
import stat

import pytest

from tests.appkit import ADMIN, create_key, csrf_of, make_app, setup_admin


def bearer(key: dict | str) -> dict:
    token = key if isinstance(key, str) else key["key"]
    return {"Authorization": f"Bearer {token}"}


def test_health_is_always_open(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_fresh_install_sends_everyone_to_setup(client):
    assert client.get("/").headers["Location"] == "/setup"
    assert client.get("/login").headers["Location"] == "/setup"
    response = client.get("/api/settings")
    assert response.status_code == 401 and "error" in response.get_json()


def test_setup_creates_one_admin_then_closes(app, client):
    setup_admin(client)
    assert client.get("/").status_code == 200
    assert client.get("/setup").headers["Location"] == "/login"
    token = csrf_of(client, "/")
    again = client.post("/setup", json={"username": "intruder", "password": "x" * 12},
                        headers={"X-CSRF-Token": token})
    assert again.status_code == 409
    assert app.extensions["llamaman"].storage.users.count() == 1


def test_setup_without_csrf_token_is_refused(app, client):
    client.get("/setup")
    response = client.post("/setup", data=ADMIN)
    assert response.status_code == 403
    assert app.extensions["llamaman"].storage.users.count() == 0


@pytest.mark.parametrize("form, message", [
    ({"username": "admin", "password": "short"}, "password"),
    ({"username": "a" * 256, "password": "long enough"}, "longer than 255"),
    ({"username": "", "password": "long enough"}, "username"),
    ({"password": "long enough"}, "username"),
])
def test_setup_rejects_bad_credentials(app, client, form, message):
    token = csrf_of(client, "/setup")
    response = client.post("/setup", json=form, headers={"X-CSRF-Token": token})
    assert response.status_code == 400 and message in response.get_json()["error"]
    page = client.post("/setup", data={**form, "csrf_token": token})
    assert page.status_code == 400 and message in page.get_data(as_text=True)
    assert app.extensions["llamaman"].storage.users.count() == 0


def login(client, username: str, password: str, token: str):
    return client.post("/login", json={"username": username, "password": password},
                       headers={"X-CSRF-Token": token})


def test_login_logout_and_no_hint_about_users(app):
    setup_admin(app.test_client())
    client = app.test_client()
    token = csrf_of(client)
    wrong_password = login(client, "admin", "wrong password", token)
    unknown_user = login(client, "nobody", "wrong password", token)
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.get_json() == unknown_user.get_json()
    assert client.get("/api/settings").status_code == 401
    assert login(client, "ADMIN", ADMIN["password"], token).status_code == 200
    assert client.get("/api/settings").status_code == 200
    client.get("/logout")
    assert client.get("/api/settings").status_code == 401


def test_login_form_keeps_next_local(app):
    setup_admin(app.test_client())
    client = app.test_client()
    token = csrf_of(client)
    for target, expected in (("/settings", "/settings"), ("//evil.example", "/"), ("http://x", "/")):
        response = client.post("/login", data={**ADMIN, "csrf_token": token, "next": target})
        assert response.headers["Location"] == expected


def test_failed_logins_are_rate_limited_per_username(app):
    setup_admin(app.test_client())
    client = app.test_client()
    token = csrf_of(client)
    for _ in range(5):
        assert login(client, "admin", "not the password", token).status_code == 401
    blocked = login(client, "admin", ADMIN["password"], token)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert client.get("/api/settings").status_code == 401


def test_session_cookie_flags_and_secret_file(app, client, tmp_path):
    client.get("/setup")
    cookie = client.get_cookie("llamaman_session")
    assert cookie.http_only and cookie.same_site == "Lax"
    secret = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text()) >= 64


def test_sessions_survive_a_restart(app, client, tmp_path):
    setup_admin(client)
    cookie = client.get_cookie("llamaman_session").value
    app.extensions["llamaman"].stop()
    restarted = make_app(tmp_path)
    try:
        other = restarted.test_client()
        other.set_cookie("llamaman_session", cookie)
        assert other.get("/api/settings").status_code == 200
    finally:
        restarted.extensions["llamaman"].stop()


def test_api_keys_are_shown_once_and_stored_hashed(app, client, tmp_path):
    token = setup_admin(client)
    key = create_key(client, token, scope="inference", name="webui")
    assert key["key"].startswith("llm-") and key["prefix"] == key["key"][:12]
    listed = client.get("/api/api-keys").get_json()
    assert [k["id"] for k in listed] == [key["id"]]
    assert set(listed[0]) == {"id", "name", "prefix", "scope", "created_at"}
    stored = (tmp_path / "data" / "api_keys.json").read_text()
    assert key["key"] not in stored and key["id"] in stored


def test_key_scopes_on_management_and_model_routes(app, client):
    token = setup_admin(client)
    inference = create_key(client, token, scope="inference")
    admin = create_key(client, token, scope="admin")
    anonymous = app.test_client()
    assert anonymous.get("/api/settings", headers=bearer(inference)).status_code == 403
    assert anonymous.get("/api/settings", headers=bearer(admin)).status_code == 200
    assert anonymous.get("/v1/models").status_code == 401
    assert anonymous.get("/v1/models", headers=bearer(inference)).get_json()["object"] == "list"
    assert anonymous.get("/api/tags", headers=bearer(admin)).status_code == 200


def test_managing_keys_needs_a_session(app, client):
    token = setup_admin(client)
    admin = create_key(client, token, scope="admin")
    anonymous = app.test_client()
    assert anonymous.get("/api/api-keys", headers=bearer(admin)).status_code == 403
    response = anonymous.post("/api/api-keys", json={"name": "x"}, headers=bearer(admin))
    assert response.status_code == 403
    assert len(client.get("/api/api-keys").get_json()) == 1


def test_revoked_garbled_and_foreign_credentials_get_401(app, client):
    token = setup_admin(client)
    key = create_key(client, token, scope="admin")
    assert client.delete(f"/api/api-keys/{key['id']}", headers={"X-CSRF-Token": token}).status_code == 200
    anonymous = app.test_client()
    for headers in (bearer(key), bearer("llm-garbage"), bearer("x" * 5000), {"Authorization": "Basic YTpi"}):
        response = anonymous.get("/api/settings", headers=headers)
        assert response.status_code == 401 and response.get_json()["error"]
    assert client.delete("/api/api-keys/nope", headers={"X-CSRF-Token": token}).status_code == 404


def test_keys_without_a_scope_are_admin_keys(app, client, tmp_path):
    setup_admin(client)
    from llamaman.auth.keys import hash_token
    legacy = "llm-legacy-key-from-an-older-version"
    app.extensions["llamaman"].storage.api_keys.put("old", {
        "id": "old", "name": "legacy", "hash": hash_token(legacy), "created_at": 1.0})
    assert app.test_client().get("/api/settings", headers=bearer(legacy)).status_code == 200


def test_require_auth_toggle_opens_model_routes_only(app, client):
    token = setup_admin(client)
    saved = client.post("/api/settings", json={"require_auth": False}, headers={"X-CSRF-Token": token})
    assert saved.status_code == 200 and saved.get_json()["require_auth"] is False
    anonymous = app.test_client()
    assert anonymous.get("/v1/models").status_code == 200
    assert anonymous.get("/api/tags", headers=bearer("llm-stale")).status_code == 200
    assert anonymous.get("/api/settings").status_code == 401


def test_session_writes_need_the_csrf_token(app, client):
    token = setup_admin(client)
    refused = client.post("/api/settings", json={"require_auth": False})
    assert refused.status_code == 403 and "CSRF" in refused.get_json()["error"]
    assert client.get("/api/settings").get_json()["require_auth"] is True
    forged = client.post("/api/settings", json={"require_auth": False}, headers={"X-CSRF-Token": "x"})
    assert forged.status_code == 403
    key = create_key(client, token, scope="admin")
    via_key = app.test_client().post("/api/settings", json={"require_auth": False}, headers=bearer(key))
    assert via_key.status_code == 200


@pytest.mark.parametrize("body, content_type", [
    ("{not json", "application/json"),
    ("[1, 2]", "application/json"),
    ('{"require_auth": "no"}', "application/json"),
    ('{"retry_count_per_failed_download": 0}', "application/json"),
    ('{"require_auth": false}', "text/plain"),
])
def test_bad_settings_input_is_400_and_changes_nothing(app, client, tmp_path, body, content_type):
    token = setup_admin(client)
    before = client.get("/api/settings").get_json()
    response = client.post("/api/settings", data=body, content_type=content_type,
                           headers={"X-CSRF-Token": token})
    assert response.status_code == 400 and response.get_json()["error"]
    assert client.get("/api/settings").get_json() == before


@pytest.mark.parametrize("body", [{}, {"name": 5}, {"name": "x" * 256}, {"name": "k", "scope": "root"}])
def test_bad_key_requests_are_400(app, client, body):
    token = setup_admin(client)
    response = client.post("/api/api-keys", json=body, headers={"X-CSRF-Token": token})
    assert response.status_code == 400 and response.get_json()["error"]
    assert client.get("/api/api-keys").get_json() == []


def test_oversized_bodies_get_413(app, client):
    token = setup_admin(client)
    big = json.dumps({"name": "x" * (17 * 1024 * 1024)})
    response = client.post("/api/api-keys", data=big, content_type="application/json",
                           headers={"X-CSRF-Token": token})
    assert response.status_code == 413 and "limit" in response.get_json()["error"]
    assert client.get("/api/api-keys").get_json() == []


def test_unknown_api_routes_answer_json_404(app, client):
    setup_admin(client)
    response = client.get("/api/does-not-exist")
    assert response.status_code == 404 and "error" in response.get_json()


def test_pages_redirect_to_login_after_setup(app):
    setup_admin(app.test_client())
    response = app.test_client().get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_create_app_has_no_side_effects_before_start(tmp_path):
    from llamaman.web import create_app
    from tests.appkit import make_config
    create_app(make_config(tmp_path))
    created = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert created == ["secret_key"]
    assert not os.path.exists(tmp_path / "data" / "users.json")


def test_unknown_routes_are_404_whatever_the_credentials(app, client):
    token = setup_admin(client)
    inference = create_key(client, token, scope="inference")
    anonymous = app.test_client()
    for path in ("/api/nonexistent", "/v1/nonexistent", "/api/instances/x/nonexistent"):
        for headers in ({}, bearer(inference), bearer("llm-garbage")):
            assert anonymous.get(path, headers=headers).status_code == 404, (path, headers)
    assert anonymous.get("/api/settings", headers=bearer(inference)).status_code == 403  # real routes stay guarded
    assert anonymous.get("/api/settings").status_code == 401


def test_openai_routes_answer_errors_in_openai_shape(app, client):
    token = setup_admin(client)
    inference = create_key(client, token, scope="inference")
    anonymous = app.test_client()
    unauthenticated = anonymous.get("/v1/models").get_json()["error"]
    assert unauthenticated["type"] == "authentication_error" and unauthenticated["code"] == 401
    assert "API key" in unauthenticated["message"] and "param" in unauthenticated
    unknown = anonymous.post("/v1/chat/completions", json={"model": "ghost", "messages": []},
                             headers=bearer(inference))
    assert unknown.status_code == 404
    assert unknown.get_json()["error"]["type"] == "not_found_error" and "ghost" in unknown.get_json()["error"]["message"]
    malformed = anonymous.post("/v1/chat/completions", data=b"{nope", headers={**bearer(inference),
                                                                              "Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.get_json()["error"]["type"] == "invalid_request_error"
    assert anonymous.get("/api/settings").get_json()["error"].startswith("API key")  # our own routes keep theirs


def test_x_api_key_header_works_wherever_a_bearer_key_does(app, client):
    token = setup_admin(client)
    inference = create_key(client, token, scope="inference")["key"]
    admin = create_key(client, token, scope="admin")["key"]
    anonymous = app.test_client()
    assert anonymous.get("/v1/models", headers={"X-API-Key": inference}).status_code == 200
    assert anonymous.get("/api/tags", headers={"X-API-Key": inference}).status_code == 200
    assert anonymous.get("/api/settings", headers={"X-API-Key": inference}).status_code == 403  # same scopes
    assert anonymous.get("/api/settings", headers={"X-API-Key": admin}).status_code == 200
    assert anonymous.get("/api/settings", headers={"X-API-Key": "llm-garbage"}).status_code == 401
    assert anonymous.get("/v1/models", headers={"X-API-Key": ""}).status_code == 401
    # a bearer header wins over X-API-Key, so one request never carries two identities
    mixed = {"Authorization": f"Bearer {inference}", "X-API-Key": admin}
    assert anonymous.get("/api/settings", headers=mixed).status_code == 403
