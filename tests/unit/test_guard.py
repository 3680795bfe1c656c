import pytest

from llamaman.auth.guard import (
    Access,
    Credential,
    Kind,
    bearer_token,
    check_csrf,
    classify,
    csrf_token,
    decide,
    session_authorised,
)
from llamaman.errors import Forbidden, Unauthorized

NONE = Credential(Kind.NONE)
SESSION = Credential(Kind.SESSION, scope="admin")
ADMIN = Credential(Kind.KEY, scope="admin")
INFERENCE = Credential(Kind.KEY, scope="inference")
BAD = Credential(Kind.BAD_KEY)


@pytest.mark.parametrize("path, access", [
    ("/health", Access.OPEN), ("/login", Access.OPEN), ("/setup", Access.OPEN),
    ("/static/style.css", Access.OPEN),
    ("/api/chat", Access.MODEL), ("/api/tags", Access.MODEL), ("/v1/chat/completions", Access.MODEL),
    ("/completion", Access.MODEL), ("/v1/backend/monitor", Access.MODEL),
    ("/v1/backend/shutdown", Access.MANAGEMENT), ("/api/instances", Access.MANAGEMENT),
    ("/api/api-keys", Access.MANAGEMENT), ("/api/pull", Access.MANAGEMENT), ("/", Access.MANAGEMENT),
    ("/healthz", Access.MANAGEMENT),
])
def test_classify(path, access):
    assert classify(path) is access


def test_ollama_root_is_open_only_on_the_api_port():
    assert classify("/", ollama_root_open=True) is Access.OPEN


# (access, credential, require_auth) -> expected exception or None
CASES = [
    (Access.MODEL, NONE, True, Unauthorized), (Access.MODEL, NONE, False, None),
    (Access.MODEL, BAD, True, Unauthorized), (Access.MODEL, BAD, False, None),
    (Access.MODEL, INFERENCE, True, None), (Access.MODEL, ADMIN, True, None),
    (Access.MODEL, SESSION, True, None),
    (Access.MANAGEMENT, NONE, False, Unauthorized), (Access.MANAGEMENT, BAD, False, Unauthorized),
    (Access.MANAGEMENT, INFERENCE, True, Forbidden), (Access.MANAGEMENT, INFERENCE, False, Forbidden),
    (Access.MANAGEMENT, ADMIN, True, None), (Access.MANAGEMENT, SESSION, False, None),
    (Access.OPEN, NONE, True, None), (Access.OPEN, BAD, True, None),
]


@pytest.mark.parametrize("access, cred, require_auth, expected", CASES)
def test_decide_follows_the_readme_table(access, cred, require_auth, expected):
    if expected is None:
        decide(access, cred, require_auth)
    else:
        with pytest.raises(expected):
            decide(access, cred, require_auth)


def test_bad_key_message_differs_from_missing_key():
    with pytest.raises(Unauthorized) as missing:
        decide(Access.MODEL, NONE, True)
    with pytest.raises(Unauthorized) as bad:
        decide(Access.MODEL, BAD, True)
    assert "invalid" in bad.value.message and "required" in missing.value.message


def test_csrf_applies_only_where_the_session_grants_access():
    assert session_authorised(Access.MANAGEMENT, SESSION, True)
    assert session_authorised(Access.MODEL, SESSION, True)
    assert not session_authorised(Access.MODEL, SESSION, False)
    assert not session_authorised(Access.MANAGEMENT, ADMIN, True)


def test_bearer_token_parsing():
    assert bearer_token(None) is None
    assert bearer_token("Bearer llm-abc") == "llm-abc"
    assert bearer_token("bearer  llm-abc ") == "llm-abc"
    assert bearer_token("Basic dXNlcjpw") == ""


def test_csrf_tokens_are_per_session_and_checked():
    session: dict = {}
    token = csrf_token(session)
    assert csrf_token(session) == token
    check_csrf(session, token)
    for presented in (None, "", token + "x"):
        with pytest.raises(Forbidden):
            check_csrf(session, presented)
    with pytest.raises(Forbidden):
        check_csrf({}, token)
