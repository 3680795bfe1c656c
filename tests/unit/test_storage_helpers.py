"""Pure helpers of the storage backends."""
from __future__ import annotations

from typing import Any

import pytest

from llamaman.errors import Invalid
from llamaman.storage._common import (
    CollectionSettings,
    check_key,
    check_log_record,
    log_matches,
    newest,
    node_key,
    node_prefix,
    stamp_node,
    username_key,
)
from llamaman.storage._jsonfile import clone
from llamaman.storage.base import Mutator, Record
from llamaman.storage.json_request_log import MAX_STEM, safe_filename
from llamaman.storage.sql_store import normalise_url


@pytest.mark.parametrize("conversation_id", ["abc123", "a-b_c", "f" * 64])
def test_safe_filename_keeps_plain_ids(conversation_id: str) -> None:
    assert safe_filename(conversation_id) == conversation_id + ".jsonl"


@pytest.mark.parametrize(
    "conversation_id", ["../x", "..", ".", "/etc/passwd", "a/b", "a\\b", "a\x00b", "", ".hidden"]
)
def test_safe_filename_cannot_escape_or_hide(conversation_id: str) -> None:
    name = safe_filename(conversation_id)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".") and name.endswith(".jsonl")


def test_safe_filename_keeps_distinct_ids_apart() -> None:
    ids = ["a/b", "a_b", "a.b", "a b", "a?b", "x" * 300, "x" * 301]
    assert len({safe_filename(i) for i in ids}) == len(ids)
    assert len(safe_filename("x" * 1000)) <= MAX_STEM + 1 + 16 + len(".jsonl")


def test_clone_is_deep_and_equal() -> None:
    value = {"a": [1, {"b": [2.5, None, True]}], "c": "ü"}
    copy = clone(value)
    assert copy == value
    copy["a"][1]["b"].append("x")
    copy["a"].append(3)
    assert value == {"a": [1, {"b": [2.5, None, True]}], "c": "ü"}


def test_node_keys_never_collide() -> None:
    assert node_key("n", "a/x") != node_key("n/a", "x")
    assert node_key("n%2Fa", "x") != node_key("n/a", "x")
    assert node_key("srv1", "m/a.gguf").startswith(node_prefix("srv1"))
    assert not node_key("srv10", "x").startswith(node_prefix("srv1"))


def test_stamp_node_copies_and_checks() -> None:
    record = {"a": 1}
    assert stamp_node(record, "n") == {"a": 1, "node": "n"} and record == {"a": 1}
    assert stamp_node(record, None) is record
    with pytest.raises(Invalid):
        stamp_node(["x"], "n")  # type: ignore[arg-type]


def test_key_and_username_checks() -> None:
    assert check_key("k" * 512) == "k" * 512
    for bad in ("", "k" * 513, 5, None):
        with pytest.raises(Invalid):
            check_key(bad)  # type: ignore[arg-type]
    assert username_key({"username": "ÄdMin"}) == "ädmin"
    for bad in ({}, {"username": ""}, {"username": 3}, {"username": "u" * 192}):
        with pytest.raises(Invalid):
            username_key(bad)


GOOD_LOG = {"id": "r1", "ts": 1.5, "conversation_id": "c", "inst_id": "i"}


@pytest.mark.parametrize(
    "change",
    [{"id": ""}, {"ts": True}, {"ts": "1"}, {"conversation_id": 7}, {"inst_id": 3},
     {"id": "x" * 192}, {"ts": None}],
)
def test_log_record_checks(change: dict[str, Any]) -> None:
    assert check_log_record(GOOD_LOG) is GOOD_LOG
    with pytest.raises(Invalid):
        check_log_record({**GOOD_LOG, **change})


def test_log_filters_and_limit() -> None:
    assert log_matches(GOOD_LOG, 1.5, "i", "c")
    assert not log_matches(GOOD_LOG, 1.6, None, None)
    assert not log_matches(GOOD_LOG, None, "j", None)
    assert not log_matches(GOOD_LOG, None, None, "d")
    rows = [{"n": i} for i in range(5)]
    assert newest(rows, None) == rows
    assert newest(rows, 2) == rows[3:]
    assert newest(rows, 0) == [] and newest(rows, -1) == []


def test_normalise_url_defaults_mysql_to_utf8mb4() -> None:
    url = normalise_url("mysql+pymysql://u:p@127.0.0.1:3306/db")
    assert url.query["charset"] == "utf8mb4"
    assert normalise_url("mysql+pymysql://u:p@h/db?charset=utf8").query["charset"] == "utf8"
    assert "charset" not in normalise_url("sqlite:////tmp/x.db").query


class MemoryCollection:
    """An in-memory Collection fake."""

    def __init__(self) -> None:
        self.rows: dict[str, Record] = {}

    def get(self, key: str) -> Record | None:
        return clone(self.rows.get(key))

    def update(self, key: str, fn: Mutator) -> Record | None:
        new = fn(clone(self.rows.get(key)))
        if new is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = clone(new)
        return clone(new)


def test_collection_settings_defaults_to_empty_documents() -> None:
    settings = CollectionSettings(MemoryCollection())  # type: ignore[arg-type]
    assert settings.get() == {} and settings.get("srv1") == {}
    assert settings.update("srv1", lambda doc: {**doc, "a": 1}) == {"a": 1}
    assert settings.update("srv1", lambda doc: {**doc, "b": doc["a"] + 1}) == {"a": 1, "b": 2}
    assert settings.update("srv1", lambda doc: None) == {}  # type: ignore[arg-type,return-value]
    assert settings.get("global") == {}
    with pytest.raises(Invalid):
        settings.get("")
