"""Every domain error maps to HTTP in one place: its status, our JSON shape or OpenAI's, and
Retry-After when the error carries one."""
import importlib
import pkgutil

import pytest
from flask import Flask

import llamaman
from llamaman.errors import LlamamanError, UpstreamFailed
from llamaman.webio import register_error_handlers


def _all_error_classes() -> list[type[LlamamanError]]:
    for module in pkgutil.walk_packages(llamaman.__path__, "llamaman."):
        importlib.import_module(module.name)  # no import-time side effects (design rule 1)
    found, todo = [], [LlamamanError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


ERRORS = _all_error_classes()


def _client(err: LlamamanError):
    app = Flask("errors-test")
    register_error_handlers(app)

    def fail(rest=""):
        raise err
    app.add_url_rule("/api/fail", "api", fail)
    app.add_url_rule("/v1/fail", "openai", fail)
    return app.test_client()


def test_the_tree_is_found():
    names = {cls.__name__ for cls in ERRORS}
    assert {"Invalid", "NotFound", "UpstreamFailed", "DownloadFailed", "LaunchFailed"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_each_error_answers_its_status_and_message(cls):
    answer = _client(cls("it broke", job_id="j1")).get("/api/fail")
    assert answer.status_code == cls.status and 400 <= cls.status < 600
    assert answer.get_json() == {"error": "it broke", "job_id": "j1"}


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_each_error_speaks_openai_on_v1(cls):
    body = _client(cls("it broke")).get("/v1/fail").get_json()
    assert body["error"]["message"] == "it broke" and body["error"]["code"] == cls.status


def test_retry_after_travels_as_a_header():
    answer = _client(LlamamanError("slow down", retry_after=7)).get("/api/fail")
    assert answer.headers["Retry-After"] == "7"


def test_an_upstream_timeout_is_a_504_and_other_upstream_failures_a_502():
    assert _client(UpstreamFailed("late", timeout=True)).get("/api/fail").status_code == 504
    assert _client(UpstreamFailed("gone")).get("/api/fail").status_code == 502
