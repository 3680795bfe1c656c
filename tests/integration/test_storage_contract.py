"""The storage contract: every backend (JSON files, SQLite, MariaDB) behaves alike.

MariaDB comes from LLAMAMAN_TEST_DATABASE_URL (scripts/provision.sh or `make test`);
without it those cases skip, and with CI=true they fail.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

from llamaman.dropin.records import UpstreamRecords
from llamaman.errors import Conflict, Invalid, StorageError
from llamaman.storage import open_storage
from llamaman.storage.base import Storage
from llamaman.storage.sql_schema import LATEST, migrate
from tests.dbkit import drop_all_tables, reset_database

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
NODE = "node-a"
SCOPED = ("instances", "downloads", "presets")
SHARED = ("users", "api_keys", "nodes")
COLLECTIONS = SCOPED + SHARED


@dataclass
class Backend:
    """One storage location that tests open Storage objects on."""

    name: str
    data_dir: Path
    url: str | None
    opened: list[Storage] = field(default_factory=list)

    def make(self, node: str = NODE, domain: UpstreamRecords | None = None) -> Storage:
        """Open a Storage of this backend for node (closed at teardown); domain imports LlamaMan data."""
        storage = open_storage(
            node=node, data_dir=self.data_dir, recordings_dir=None, database_url=self.url
        )
        storage.open(domain)
        self.opened.append(storage)
        return storage

    def child_args(self) -> list[str]:
        """Arguments that let a child process open the same storage."""
        return [str(self.data_dir), self.url or ""]


@pytest.fixture(scope="session")
def mariadb_url(database_url: str) -> str:
    """The MariaDB test database, emptied of tables once per session."""
    drop_all_tables(database_url)  # so the schema below is the one this code creates
    return database_url


@pytest.fixture(params=["json", "sqlite", "mariadb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty storage location of each backend."""
    url = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'llamaman.db'}"
    elif request.param == "mariadb":
        url = request.getfixturevalue("mariadb_url")  # skips (fails in CI) when missing
        reset_database(url)
    b = Backend(request.param, tmp_path / "data", url)
    yield b
    for storage in b.opened:
        storage.close()


@pytest.fixture
def store(backend: Backend) -> Storage:
    """An opened Storage of node NODE."""
    return backend.make()


def sample(i: int) -> dict[str, Any]:
    """A record any collection accepts (users need 'username', api keys carry 'hash')."""
    return {"username": f"user{i}", "hash": f"hash-{i}", "value": i, "nested": {"l": [1, "ü"]}}


def stored(collection: str, record: dict[str, Any], node: str = NODE) -> dict[str, Any]:
    """What a collection returns for a record put by node."""
    return {**record, "node": node} if collection in SCOPED else record


def by_value(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: r["value"])


# --- every Collection method -------------------------------------------------------------


@pytest.mark.parametrize("name", COLLECTIONS)
def test_collection_put_get_list_delete(store: Storage, name: str) -> None:
    coll = getattr(store, name)
    assert coll.get("k1") is None
    assert coll.list() == []
    coll.put("k1", sample(1))
    coll.put("k2", sample(2))
    assert coll.get("k1") == stored(name, sample(1))
    assert by_value(coll.list()) == [stored(name, sample(1)), stored(name, sample(2))]
    coll.put("k1", sample(3))
    assert coll.get("k1") == stored(name, sample(3))
    assert coll.delete("k1") is True
    assert coll.delete("k1") is False
    assert coll.get("k1") is None
    assert coll.list() == [stored(name, sample(2))]


@pytest.mark.parametrize("name", COLLECTIONS)
def test_collection_update(store: Storage, name: str) -> None:
    coll = getattr(store, name)
    seen: list[Any] = []

    def bump(current: dict[str, Any] | None) -> dict[str, Any]:
        seen.append(current)
        return {**(current or sample(0)), "value": (current or {"value": 0})["value"] + 1}

    assert coll.update("k", bump) == stored(name, {**sample(0), "value": 1})
    assert seen[-1] is None
    assert coll.update("k", bump)["value"] == 2
    assert seen[-1] == stored(name, {**sample(0), "value": 1})
    assert coll.get("k")["value"] == 2
    assert coll.update("k", lambda cur: None) is None
    assert coll.get("k") is None
    assert coll.update("absent", lambda cur: None) is None
    assert coll.list() == []


def test_update_that_raises_changes_nothing(store: Storage) -> None:
    store.instances.put("k", {"value": 1})

    def explode(current: dict[str, Any] | None) -> dict[str, Any]:
        current["value"] = 99  # mutating the argument must not leak either
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.instances.update("k", explode)
    assert store.instances.get("k") == {"value": 1, "node": NODE}


def age_files(backend: Backend) -> None:
    """Backdate the JSON files so their parsed content is cached (a no-op for SQL)."""
    if backend.name == "json":
        old = time.time() - 3600
        for path in backend.data_dir.glob("*.json"):
            os.utime(path, (old, old))


def test_returned_records_are_copies(store: Storage, backend: Backend) -> None:
    record = {"value": 1, "nested": {"l": [1]}}
    store.instances.put("k", record)
    store.settings.update("global", lambda doc: {"l": [1]})
    age_files(backend)
    record["nested"]["l"].append("caller")
    store.instances.get("k")["nested"]["l"].append("get")
    store.instances.list()[0]["nested"]["l"].append("list")
    store.instances.update("k", lambda cur: cur)["nested"]["l"].append("update")
    store.settings.get()["l"].append("get")
    store.settings.update("global", lambda doc: doc)["l"].append("update")
    assert store.instances.get("k") == {"value": 1, "nested": {"l": [1]}, "node": NODE}
    assert store.settings.get() == {"l": [1]}


def test_keys_are_exact_strings(store: Storage) -> None:
    keys = ["model.gguf", "Model.gguf", "model.gguf ", "/models/sub dir/ü-模型.gguf", "a/../b"]
    for i, key in enumerate(keys):
        store.presets.put(key, {"value": i})
    assert [store.presets.get(k)["value"] for k in keys] == list(range(len(keys)))
    assert len(store.presets.list()) == len(keys)


def test_invalid_keys_and_records_are_refused(store: Storage) -> None:
    for bad_key in ("", "k" * 513, None):
        with pytest.raises(Invalid):
            store.instances.put(bad_key, {"value": 1})
    with pytest.raises(Invalid):
        store.instances.put("k", ["not", "a", "dict"])
    with pytest.raises(Invalid):
        store.users.put("u", {"no": "username"})
    assert store.instances.list() == [] and store.users.count() == 0


def test_data_survives_reopen(backend: Backend) -> None:
    first = backend.make()
    first.instances.put("k", {"value": 1})
    first.users.add("u", {"username": "ann"})
    first.settings.update("global", lambda doc: {"require_auth": False})
    first.request_log.append({"id": "r", "ts": 1.0, "conversation_id": "c"})
    first.close()
    again = backend.make()
    again.open()  # opening twice is harmless
    assert again.instances.get("k") == {"value": 1, "node": NODE}
    assert again.users.get_by_username("ANN") == {"username": "ann"}
    assert again.settings.get() == {"require_auth": False}
    assert [r["id"] for r in again.request_log.query()] == ["r"]


# --- node scoping ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCOPED)
def test_node_scoped_collections_are_partitioned(backend: Backend, name: str) -> None:
    a, b = backend.make("n"), backend.make("n/a")  # node names may contain separators
    getattr(a, name).put("a/x", {"value": 1})
    getattr(b, name).put("x", {"value": 2})
    getattr(b, name).put("a/x", {"value": 3})
    assert getattr(a, name).get("x") is None
    assert getattr(a, name).get("a/x") == {"value": 1, "node": "n"}
    assert by_value(getattr(b, name).list()) == [
        {"value": 2, "node": "n/a"},
        {"value": 3, "node": "n/a"},
    ]
    getattr(b, name).update("a/x", lambda cur: {**cur, "value": 30})
    assert getattr(b, name).delete("x") is True
    assert getattr(a, name).delete("x") is False
    assert getattr(a, name).list() == [{"value": 1, "node": "n"}]
    assert getattr(b, name).list() == [{"value": 30, "node": "n/a"}]


def test_shared_collections_are_seen_by_every_node(backend: Backend) -> None:
    a, b = backend.make("srv1"), backend.make("srv2")
    a.users.add("u", {"username": "ann"})
    a.api_keys.put("k", {"hash": "h"})
    a.nodes.put("srv1", {"url": "http://srv1:5000"})
    a.settings.update("global", lambda doc: {"shared": True})
    assert b.users.get("u") == {"username": "ann"}
    assert b.api_keys.find_by_hash("h") == {"hash": "h"}
    assert b.nodes.list() == [{"url": "http://srv1:5000"}]
    assert b.settings.get() == {"shared": True}


# --- users, api keys, settings -----------------------------------------------------------


def test_users_lookup_and_count(store: Storage) -> None:
    assert store.users.count() == 0
    assert store.users.add("u1", {"username": "Alice", "role": "admin"}) is True
    assert store.users.add("u2", {"username": "bob"}) is True
    assert store.users.count() == 2
    assert store.users.get_by_username("aLiCe") == {"username": "Alice", "role": "admin"}
    assert store.users.get_by_username("carol") is None
    store.users.update("u2", lambda cur: {**cur, "username": "Robert"})
    assert store.users.get_by_username("bob") is None
    assert store.users.get_by_username("ROBERT") == {"username": "Robert"}
    assert store.users.delete("u1") and store.users.count() == 1


def test_usernames_are_unique_case_insensitively(store: Storage) -> None:
    store.users.add("u1", {"username": "Alice"})
    store.users.add("u2", {"username": "bob"})
    with pytest.raises(Conflict):
        store.users.add("u3", {"username": "ALICE"})
    with pytest.raises(Conflict):
        store.users.add("u1", {"username": "other"})  # id taken
    with pytest.raises(Conflict):
        store.users.put("u2", {"username": "alice"})
    with pytest.raises(Conflict):
        store.users.update("u2", lambda cur: {**cur, "username": "aLICE"})
    with pytest.raises(Conflict):
        store.users.put("u9", {"username": "Bob"})
    store.users.put("u2", {"username": "BOB", "renamed": True})  # own name, new case
    assert store.users.count() == 2
    assert store.users.get("u2") == {"username": "BOB", "renamed": True}


def test_add_only_if_empty(store: Storage) -> None:
    assert store.users.add("u1", {"username": "first"}, only_if_empty=True) is True
    assert store.users.add("u2", {"username": "second"}, only_if_empty=True) is False
    assert store.users.count() == 1
    assert store.users.add("u2", {"username": "second"}) is True
    store.users.delete("u1")
    store.users.delete("u2")
    assert store.users.add("u3", {"username": "again"}, only_if_empty=True) is True


def test_api_key_find_by_hash(store: Storage) -> None:
    store.api_keys.put("k1", {"name": "webui", "hash": "aa", "scope": "inference"})
    store.api_keys.put("k2", {"name": "admin", "hash": "bb", "scope": "admin"})
    assert store.api_keys.find_by_hash("bb")["name"] == "admin"
    assert store.api_keys.find_by_hash("AA") is None
    store.api_keys.update("k1", lambda cur: {**cur, "hash": "cc"})
    assert store.api_keys.find_by_hash("aa") is None
    assert store.api_keys.find_by_hash("cc")["name"] == "webui"
    store.api_keys.delete("k2")
    assert store.api_keys.find_by_hash("bb") is None


def test_settings_scopes(backend: Backend) -> None:
    a, b = backend.make("srv1"), backend.make("srv2")
    assert a.settings.get() == {} and a.settings.get("srv1") == {}
    doc = {"require_auth": True, "cleanup": {"downloads_enabled": True}}
    assert a.settings.update("global", lambda cur: {**cur, **doc}) == doc
    got = a.settings.update("global", lambda cur: {**cur, "require_auth": not cur["require_auth"]})
    assert got == {**doc, "require_auth": False}
    assert a.settings.update("srv1", lambda cur: {**cur, "docker_images": ["cuda"]}) == {
        "docker_images": ["cuda"]
    }
    assert b.settings.get("srv1") == {"docker_images": ["cuda"]}
    assert b.settings.get("srv2") == {}
    assert b.settings.get("global") == {**doc, "require_auth": False}


# --- request log -------------------------------------------------------------------------


def log_record(i: int, ts: float, conv: str, inst: str | None = None) -> dict[str, Any]:
    record = {"id": f"r{i}", "ts": ts, "conversation_id": conv, "body": {"n": i}}
    return record if inst is None else {**record, "inst_id": inst}


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


def test_request_log_query(store: Storage) -> None:
    log = store.request_log
    records = [
        log_record(0, 100.5, "c1", "i1"),
        log_record(1, 101.0, "c2", "i2"),
        log_record(2, 102.25, "c1", "i1"),
        log_record(3, 103.0, "../../etc/passwd", None),
        log_record(4, 104.0, "c2", "i1"),
    ]
    for record in (records[3], records[0], records[4], records[1], records[2]):
        log.append(record)
    assert log.query() == records
    assert ids(log.query(since=102.25)) == ["r2", "r3", "r4"]
    assert ids(log.query(inst_id="i1")) == ["r0", "r2", "r4"]
    assert ids(log.query(conversation_id="c1")) == ["r0", "r2"]
    assert ids(log.query(conversation_id="../../etc/passwd")) == ["r3"]
    assert ids(log.query(limit=2)) == ["r3", "r4"]
    assert ids(log.query(inst_id="i1", since=101, limit=1)) == ["r4"]
    assert ids(log.query(conversation_id="c2", inst_id="i2")) == ["r1"]
    assert log.query(limit=0) == [] and log.query(conversation_id="nope") == []


def test_request_log_prune(store: Storage) -> None:
    for i, ts in enumerate([10.0, 20.0, 30.0, 40.0]):
        store.request_log.append(log_record(i, ts, "c1" if i % 2 else "c2"))
    assert store.request_log.prune(older_than=30.0) == 2
    assert ids(store.request_log.query()) == ["r2", "r3"]
    assert store.request_log.prune(older_than=30.0) == 0
    assert store.request_log.prune(older_than=1e12) == 2
    assert store.request_log.query() == []
    store.request_log.append(log_record(9, 50.0, "c1"))
    assert ids(store.request_log.query(conversation_id="c1")) == ["r9"]


def test_request_log_refuses_incomplete_records(store: Storage) -> None:
    for bad in ({"ts": 1.0, "conversation_id": "c"}, {"id": "r", "conversation_id": "c"},
                {"id": "r", "ts": "yesterday", "conversation_id": "c"}, {"id": "r", "ts": 1.0}):
        with pytest.raises(Invalid):
            store.request_log.append(bad)
    assert store.request_log.query() == []


# --- concurrency -------------------------------------------------------------------------


def run_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    """Run target(i) on n threads released together; return results, re-raise errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def increment(current: dict[str, Any] | None) -> dict[str, Any]:
    return {"count": (current or {"count": 0})["count"] + 1}


@pytest.mark.timeout(60)
def test_concurrent_thread_updates_lose_nothing(store: Storage) -> None:
    def work(i: int) -> None:
        for _ in range(50):
            store.instances.update("counter", increment)

    run_threads(8, work)
    assert store.instances.get("counter")["count"] == 400


@pytest.mark.timeout(60)
def test_concurrent_first_run_setup_creates_one_user(backend: Backend) -> None:
    storages = [backend.make() for _ in range(2)]  # two storages: two locks/pools too

    def setup(i: int) -> bool:
        user = {"username": f"admin{i}"}
        return storages[i % 2].users.add(f"u{i}", user, only_if_empty=True)

    results = run_threads(8, setup)
    assert results.count(True) == 1
    assert storages[0].users.count() == 1


CHILD_UPDATER = """
import pathlib, sys, time
from llamaman.storage import open_storage
data_dir, url, tag, n, go = sys.argv[1:6]
s = open_storage(node="node-a", data_dir=pathlib.Path(data_dir), database_url=url or None)
s.open()
print("ready", flush=True)
while not pathlib.Path(go).exists():
    time.sleep(0.002)
def bump(cur):
    cur = cur or {"count": 0, "order": []}
    return {"count": cur["count"] + 1, "order": cur["order"] + [tag]}
for i in range(int(n)):
    s.instances.update("counter", bump)
    s.instances.put(f"{tag}-{i}", {"i": i})
s.close()
"""


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    """Start `python -c code args` with the repository importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class ParsePoller:
    """Re-parse a JSON file in a thread until stopped, collecting any failure."""

    def __init__(self, path: Path) -> None:
        self.path, self.reads, self.errors = path, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                json.loads(self.path.read_bytes())
                self.reads += 1
            except FileNotFoundError:
                pass
            except ValueError as e:
                self.errors.append(e)


@pytest.mark.timeout(90)
def test_two_processes_interleaving_updates_lose_nothing(backend: Backend, tmp_path: Path) -> None:
    store = backend.make()  # creates the schema/dirs before the children start
    n, go = 100, tmp_path / "go"
    children = [spawn(CHILD_UPDATER, *backend.child_args(), tag, str(n), str(go)) for tag in "AB"]
    for child in children:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
    with ParsePoller(backend.data_dir / "state.json") as poller:
        go.touch()
        for child in children:
            _, err = child.communicate(timeout=80)
            assert child.returncode == 0, err
    counter = store.instances.get("counter")
    assert counter["count"] == 2 * n
    assert sorted(counter["order"]) == ["A"] * n + ["B"] * n
    assert len(store.instances.list()) == 2 * n + 1
    assert poller.errors == []
    if backend.name == "json":
        assert poller.reads > 0


# --- JSON backend: crash safety, files, caching ------------------------------------------

json_only = pytest.mark.parametrize("backend", ["json"], indirect=True)
sql_only = pytest.mark.parametrize("backend", ["sqlite", "mariadb"], indirect=True)
mariadb_only = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)

CHILD_CRASHER = """
import os, pathlib, signal, sys
from llamaman.storage import open_storage
data_dir, hook = sys.argv[1:3]
s = open_storage(node="node-a", data_dir=pathlib.Path(data_dir), database_url=None)
s.open()
def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(os, hook, die)  # fsync: temp file written, unsynced; replace: synced, not renamed
s.instances.put("rec", {"v": "new", "pad": "x" * 100000})
"""


def temp_files(directory: Path) -> list[Path]:
    return list(directory.glob(".*.tmp"))


@json_only
@pytest.mark.parametrize("hook", ["fsync", "replace"])
@pytest.mark.timeout(30)
def test_json_crash_mid_write_keeps_previous_content(backend: Backend, hook: str) -> None:
    store = backend.make()
    store.instances.put("rec", {"v": "old"})
    child = spawn(CHILD_CRASHER, str(backend.data_dir), hook)
    child.communicate(timeout=20)
    assert child.returncode == -signal.SIGKILL
    assert temp_files(backend.data_dir), "the child should have died inside the write"
    doc = json.loads((backend.data_dir / "state.json").read_text())
    assert [r["v"] for r in doc["instances"].values()] == ["old"]
    assert store.instances.get("rec") == {"v": "old", "node": NODE}
    reopened = backend.make()  # open() clears the dead writer's temp file
    assert temp_files(backend.data_dir) == []
    reopened.instances.put("rec", {"v": "after"})
    assert store.instances.get("rec")["v"] == "after"


CHILD_WRITER = """
import itertools, pathlib, sys
from llamaman.storage import open_storage
s = open_storage(node="node-a", data_dir=pathlib.Path(sys.argv[1]), database_url=None)
s.open()
for i in itertools.count():
    s.instances.put("rec", {"i": i, "pad": "x" * (i % 5000)})
    if i == 0:
        print("writing", flush=True)
"""


@json_only
@pytest.mark.timeout(30)
def test_json_writer_killed_at_any_moment_leaves_parseable_file(backend: Backend) -> None:
    store = backend.make()
    for delay in (0.05, 0.13, 0.21):
        child = spawn(CHILD_WRITER, str(backend.data_dir))
        assert child.stdout.readline().strip() == "writing"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)
        doc = json.loads((backend.data_dir / "state.json").read_text())
        (record,) = doc["instances"].values()
        assert record["i"] >= 0 and store.instances.get("rec") == record


@json_only
def test_json_files_follow_the_readme_layout(store: Storage, backend: Backend) -> None:
    store.instances.put("i1", {"value": 1})
    store.downloads.put("d1", {"value": 2})
    store.presets.put("/models/a.gguf", {"value": 3})
    store.users.add("u1", {"username": "ann"})
    store.api_keys.put("k1", {"hash": "h"})
    store.nodes.put(NODE, {"url": "x"})
    store.settings.update("global", lambda doc: {"require_auth": True})
    store.settings.update(NODE, lambda doc: {"docker_images": []})

    def read(name: str) -> Any:
        return json.loads((backend.data_dir / name).read_text())

    state = read("state.json")
    assert set(state) == {"instances", "downloads"}
    assert list(state["instances"].values()) == [{"value": 1, "node": NODE}]
    assert list(read("presets.json").values()) == [{"value": 3, "node": NODE}]
    assert read("users.json") == {"u1": {"username": "ann"}}
    assert read("api_keys.json") == {"k1": {"hash": "h"}}
    assert read("nodes.json") == {NODE: {"url": "x"}}
    assert read("settings.json") == {"require_auth": True}  # LlamaMan's flat format
    assert read("node_settings.json") == {NODE: {"docker_images": []}}


@json_only
def test_json_request_log_files_stay_inside_their_directory(store: Storage, backend: Backend) -> None:
    evil = ["../escape", "/abs/path", "..", ".hidden", "a\x00b", "c1"]
    for i, conv in enumerate(evil):
        store.request_log.append(log_record(i, float(i), conv))
    log_dir = backend.data_dir / "request_log"
    files = sorted(p.name for p in log_dir.iterdir() if p.suffix == ".jsonl")
    assert len(files) == len(evil) and "c1.jsonl" in files
    assert not any(f.startswith(".") for f in files)
    everywhere = set(backend.data_dir.parent.rglob("*.jsonl"))
    assert everywhere == {log_dir / f for f in files}
    for i, conv in enumerate(evil):
        assert [r["id"] for r in store.request_log.query(conversation_id=conv)] == [f"r{i}"]


@json_only
def test_json_reads_see_changes_made_by_another_writer(store: Storage, backend: Backend) -> None:
    store.users.add("u1", {"username": "ann"})
    age_files(backend)  # old enough to be cached
    assert store.users.count() == 1
    other = backend.make("node-b")
    other.users.add("u2", {"username": "bob"})
    assert store.users.get_by_username("bob") == {"username": "bob"}
    path = backend.data_dir / "users.json"
    path.write_text(json.dumps({"u3": {"username": "carl"}}))  # an edit by hand, same inode
    assert store.users.list() == [{"username": "carl"}]


@json_only
def test_json_adopts_single_node_llamaman_files(backend: Backend) -> None:
    backend.data_dir.mkdir(parents=True)
    legacy_state = {"instances": {"abc": {"id": "abc", "port": 8000}}, "downloads": {}}
    (backend.data_dir / "state.json").write_text(json.dumps(legacy_state))
    (backend.data_dir / "presets.json").write_text(json.dumps({"/models/m.gguf": {"ctx": 4096}}))
    (backend.data_dir / "settings.json").write_text(json.dumps({"require_auth": False}))
    store = backend.make("srv1", UpstreamRecords())
    assert store.instances.get("abc") == {"id": "abc", "port": 8000, "node": "srv1"}
    # LlamaMan 1.2.1 presets are imported with their model path (unknown fields kept)
    assert store.presets.list() == [{"ctx": 4096, "model_path": "/models/m.gguf", "node": "srv1"}]
    assert store.settings.get() == {"require_auth": False}
    assert backend.make("srv2").instances.list() == []


@json_only
def test_json_corrupt_file_is_a_storage_error(backend: Backend) -> None:
    backend.data_dir.mkdir(parents=True)
    (backend.data_dir / "users.json").write_text("{not json")
    store = open_storage(node=NODE, data_dir=backend.data_dir, database_url=None)
    with pytest.raises(StorageError):
        store.users.count()


# --- SQL backends: migrations, dropped connections --------------------------------------


@sql_only
def test_sql_migrates_a_version_1_database(backend: Backend) -> None:
    if backend.name == "mariadb":
        drop_all_tables(backend.url)
    engine = create_engine(backend.url, poolclass=NullPool)
    assert migrate(engine, target=1) == 0
    with engine.begin() as conn:  # data written by a version-1 llamaman
        conn.execute(
            text("INSERT INTO users (record_id, username_lower, body) VALUES (:i, :u, :b)"),
            {"i": "u1", "u": "ann", "b": json.dumps({"username": "Ann"})},
        )
        assert "setup_guard" not in {c["name"] for c in inspect(conn).get_columns("users")}
    store = backend.make()
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT MAX(version) FROM schema_version")) == LATEST
        assert "setup_guard" in {c["name"] for c in inspect(conn).get_columns("users")}
    engine.dispose()
    assert store.users.get_by_username("ANN") == {"username": "Ann"}
    assert store.users.add("u2", {"username": "bob"}, only_if_empty=True) is False
    store.users.delete("u1")
    assert store.users.add("u2", {"username": "bob"}, only_if_empty=True) is True


@sql_only
def test_sql_refuses_a_newer_schema(backend: Backend) -> None:
    backend.make().close()
    engine = create_engine(backend.url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version VALUES (:v, 0)"), {"v": LATEST + 1})
    engine.dispose()
    with pytest.raises(StorageError, match="newer"):
        backend.make()


def kill_connection(url: str, connection_id: int) -> None:
    """KILL a server connection from a second connection and wait until it is gone."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        conn.execute(text(f"KILL {int(connection_id)}"))
        for _ in range(200):
            ids = conn.execute(text("SELECT ID FROM information_schema.PROCESSLIST")).scalars()
            if connection_id not in set(ids):
                break
            time.sleep(0.01)
    engine.dispose()


def connection_id(storage: Any) -> int:
    with storage.engine.connect() as conn:
        return conn.scalar(text("SELECT CONNECTION_ID()"))


@mariadb_only
def test_sql_survives_a_killed_pooled_connection(store: Any, backend: Backend) -> None:
    store.engine.dispose()  # one pooled connection from here on
    store.instances.put("k", {"value": 1})
    victim = connection_id(store)
    kill_connection(backend.url, victim)
    assert store.instances.get("k") == {"value": 1, "node": NODE}
    assert connection_id(store) != victim


class KillMidStatement:
    """Kill the server connection about to run a statement on table (at most `times` times)."""

    def __init__(self, storage: Any, url: str, table: str, times: int) -> None:
        self.engine, self.url, self.table, self.times = storage.engine, url, table, times
        self.killed = 0

    def __enter__(self) -> Self:
        event.listen(self.engine, "before_cursor_execute", self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._hook)

    def _hook(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.killed < self.times and f"FROM {self.table}" in statement:
            self.killed += 1
            kill_connection(self.url, cursor.connection.thread_id())


@mariadb_only
def test_sql_retries_once_when_the_connection_drops_mid_operation(
    store: Any, backend: Backend
) -> None:
    store.instances.put("k", {"count": 1})
    with KillMidStatement(store, backend.url, "instances", times=1) as killer:
        assert store.instances.update("k", increment) == {"count": 2, "node": NODE}
    assert killer.killed == 1
    assert store.instances.get("k") == {"count": 2, "node": NODE}  # applied exactly once
    killer = KillMidStatement(store, backend.url, "instances", times=2)
    with killer, pytest.raises(StorageError):
        store.instances.update("k", increment)
    assert killer.killed == 2
    assert store.instances.get("k") == {"count": 2, "node": NODE}
