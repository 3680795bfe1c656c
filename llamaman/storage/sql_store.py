"""SQL storage backend (SQLAlchemy Core): MariaDB/MySQL via PyMySQL, or SQLite.

Every read-modify-write runs in one transaction that locks the row (SELECT ... FOR
UPDATE on MySQL, BEGIN IMMEDIATE on SQLite), so writers on other threads, processes
or nodes lose nothing.
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from llamaman.errors import Conflict, StorageError
from llamaman.storage._common import (
    CollectionSettings,
    check_key,
    check_log_record,
    check_record,
    stamp_node,
    username_key,
)
from llamaman.storage.base import Mutator, Record
from llamaman.storage.sql_schema import metadata, migrate
from llamaman.storage.upstream import DomainRecords
from llamaman.storage.upstream_sql import import_upstream

T = TypeVar("T")

CONTENTION_RETRIES = 5
DISCONNECT_RETRIES = 1
_CONTENTION_CODES = {1205, 1213}  # MySQL lock wait timeout, deadlock


def dumps(record: Record) -> str:
    """Serialise a record body."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def normalise_url(url: str | URL) -> URL:
    """Parse a database URL; MySQL URLs get charset=utf8mb4 unless they name one."""
    parsed = make_url(url)
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _is_contention(e: DBAPIError) -> bool:
    """Tell whether e is a deadlock / lock timeout that a retry resolves."""
    code = getattr(e.orig, "args", [None])[0] if e.orig is not None else None
    return code in _CONTENTION_CODES or "database is locked" in str(e.orig)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of pysqlite.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front, so read-modify-write cannot interleave.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def build_engine(url: URL) -> Engine:
    """Create the engine (no connection yet) with the backend's concurrency settings."""
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_recycle=1800, isolation_level="READ COMMITTED"
    )


class Database:
    """The engine plus transactions that survive dropped connections and deadlocks."""

    def __init__(self, url: str | URL) -> None:
        self.url = normalise_url(url)
        self.engine: Engine | None = None

    def open(self, prepare: Callable[[Engine], Any] | None = None) -> None:
        """Create the engine, run prepare(engine), and bring the schema up to date."""
        if self.engine is None:
            self.engine = build_engine(self.url)
        try:
            if prepare is not None:
                prepare(self.engine)
            migrate(self.engine)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot open database: {e}") from e

    def close(self) -> None:
        """Close every pooled connection."""
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def run(self, fn: Callable[[Connection], T]) -> T:
        """Run fn in one transaction; retry it after a dropped connection or a deadlock."""
        if self.engine is None:
            raise StorageError("storage is not open")
        disconnects, contentions = DISCONNECT_RETRIES, CONTENTION_RETRIES
        while True:
            try:
                with self.engine.begin() as conn:
                    return fn(conn)
            except IntegrityError:
                raise  # callers decide: a retry or a Conflict
            except DBAPIError as e:
                if e.connection_invalidated and disconnects > 0:
                    disconnects -= 1
                elif _is_contention(e) and contentions > 0:
                    contentions -= 1
                    time.sleep(random.uniform(0.005, 0.05))
                else:
                    raise StorageError(f"database error: {e.orig}") from e
            except SQLAlchemyError as e:
                raise StorageError(f"database error: {e}") from e


def _load(row: Any) -> Record | None:
    return json.loads(row[0]) if row is not None else None


class SqlRepository:
    """A collection in one table of JSON bodies keyed by record_id (and node)."""

    conflict_message = "record conflicts with an existing one"

    def __init__(self, db: Database, table: Table, *, node: str | None = None) -> None:
        self.db = db
        self.table = table
        self.node = node

    def get(self, key: str) -> Record | None:
        """Return the record stored under key, or None."""
        stmt = select(self.table.c.body).where(self._match(key))
        return _load(self.db.run(lambda conn: conn.execute(stmt).first()))

    def list(self) -> list[Record]:
        """Return every record (of this node, for node-scoped collections)."""
        stmt = select(self.table.c.body).order_by(self.table.c.record_id)
        if self.node is not None:
            stmt = stmt.where(self.table.c.node == self.node)
        return [json.loads(r[0]) for r in self.db.run(lambda conn: conn.execute(stmt).all())]

    def put(self, key: str, record: Record) -> None:
        """Insert or replace the record stored under key."""
        check_record(record)
        self.update(key, lambda _current: record)

    def delete(self, key: str) -> bool:
        """Remove the record; True when it existed."""
        stmt = delete(self.table).where(self._match(key))
        return self.db.run(lambda conn: conn.execute(stmt).rowcount) > 0

    def update(self, key: str, fn: Mutator) -> Record | None:
        """Atomically replace the record with fn(current); fn returning None deletes it.

        fn may run more than once (after a deadlock or a concurrent insert).
        """
        match = self._match(key)
        locked = select(self.table.c.body).where(match).with_for_update()

        def tx(conn: Connection) -> Record | None:
            row = conn.execute(locked).first()
            new = fn(_load(row))
            if new is None:
                if row is not None:
                    conn.execute(delete(self.table).where(match))
                return None
            new = stamp_node(new, self.node)
            values = {"body": dumps(new), **self.index_values(new)}
            if row is None:
                conn.execute(insert(self.table).values(**self._ids(key), **values))
            else:
                conn.execute(update(self.table).where(match).values(**values))
            return json.loads(values["body"])

        return self._write(tx)

    def index_values(self, record: Record) -> dict[str, Any]:
        """Return the indexed columns derived from a record body."""
        return {}

    def _write(self, tx: Callable[[Connection], T]) -> T:
        try:
            return self.db.run(tx)
        except IntegrityError:
            pass  # another writer inserted this key first; the retry will lock its row
        try:
            return self.db.run(tx)
        except IntegrityError as e:
            raise Conflict(self.conflict_message) from e

    def _ids(self, key: str) -> dict[str, str]:
        ids = {"record_id": check_key(key)}
        if self.node is not None:
            ids["node"] = self.node
        return ids

    def _match(self, key: str) -> ColumnElement[bool]:
        return and_(*(self.table.c[name] == value for name, value in self._ids(key).items()))


class SqlUserRepository(SqlRepository):
    """Users; username_lower is unique, setup_guard makes first-run setup single."""

    conflict_message = "user id or username is taken"

    def get_by_username(self, username: str) -> Record | None:
        """Return the user with this (case-insensitive) username, or None."""
        stmt = select(self.table.c.body).where(self.table.c.username_lower == username.lower())
        return _load(self.db.run(lambda conn: conn.execute(stmt).first()))

    def count(self) -> int:
        """Return the number of users."""
        stmt = select(func.count()).select_from(self.table)
        return self.db.run(lambda conn: conn.scalar(stmt))

    def add(self, key: str, record: Record, *, only_if_empty: bool = False) -> bool:
        """Insert a new user. False when only_if_empty and a user exists already."""
        check_record(record)
        # Concurrent first-run setups all insert setup_guard=1; the unique index lets one win.
        values = {
            **self._ids(key),
            **self.index_values(record),
            "body": dumps(record),
            "setup_guard": 1 if only_if_empty else None,
        }

        def tx(conn: Connection) -> bool:
            if only_if_empty and conn.scalar(select(func.count()).select_from(self.table)):
                return False
            conn.execute(insert(self.table).values(**values))
            return True

        try:
            return self.db.run(tx)
        except IntegrityError as e:
            if only_if_empty and self.count() > 0:
                return False
            raise Conflict(self.conflict_message) from e

    def index_values(self, record: Record) -> dict[str, Any]:
        """Return the lower-cased username column."""
        return {"username_lower": username_key(record)}


class SqlApiKeyRepository(SqlRepository):
    """API keys; the 'hash' field is indexed as key_hash."""

    def find_by_hash(self, key_hash: str) -> Record | None:
        """Return the key record whose 'hash' field equals key_hash, or None."""
        stmt = select(self.table.c.body).where(self.table.c.key_hash == key_hash).limit(1)
        return _load(self.db.run(lambda conn: conn.execute(stmt).first()))

    def index_values(self, record: Record) -> dict[str, Any]:
        """Return the key_hash column."""
        key_hash = record.get("hash")
        return {"key_hash": key_hash if isinstance(key_hash, str) else None}


class SqlRequestLog:
    """The request_log table: one row per record, indexed by ts, inst_id, conversation."""

    def __init__(self, db: Database, table: Table) -> None:
        self.db = db
        self.table = table

    def append(self, record: Record) -> None:
        """Store one request record (must carry 'id', 'ts', 'conversation_id')."""
        check_log_record(record)
        stmt = insert(self.table).values(
            id=record["id"],
            ts=float(record["ts"]),
            inst_id=record.get("inst_id"),
            conversation_id=record["conversation_id"],
            body=dumps(record),
        )
        self.db.run(lambda conn: conn.execute(stmt))

    def query(
        self,
        *,
        since: float | None = None,
        inst_id: str | None = None,
        conversation_id: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Return matching records, oldest first (the newest `limit` when limited)."""
        c = self.table.c
        stmt = select(c.body)
        for column, value in ((c.inst_id, inst_id), (c.conversation_id, conversation_id)):
            if value is not None:
                stmt = stmt.where(column == value)
        if since is not None:
            stmt = stmt.where(c.ts >= since)
        if limit is None:
            stmt = stmt.order_by(c.ts, c.seq)
        else:
            stmt = stmt.order_by(c.ts.desc(), c.seq.desc()).limit(max(limit, 0))
        rows = self.db.run(lambda conn: conn.execute(stmt).all())
        records = [json.loads(r[0]) for r in rows]
        return records if limit is None else records[::-1]

    def prune(self, older_than: float) -> int:
        """Delete records with ts < older_than; return how many were removed."""
        stmt = delete(self.table).where(self.table.c.ts < older_than)
        return self.db.run(lambda conn: conn.execute(stmt).rowcount)


class SqlStorage:
    """Storage in a SQL database; every node of a cluster shares one."""

    def __init__(self, *, node: str, database_url: str | URL) -> None:
        self.node = node
        self.db = Database(database_url)
        t = metadata.tables
        self.instances = SqlRepository(self.db, t["instances"], node=node)
        self.downloads = SqlRepository(self.db, t["downloads"], node=node)
        self.presets = SqlRepository(self.db, t["presets"], node=node)
        self.users = SqlUserRepository(self.db, t["users"])
        self.api_keys = SqlApiKeyRepository(self.db, t["api_keys"])
        self.settings = CollectionSettings(SqlRepository(self.db, t["settings"]))
        self.request_log = SqlRequestLog(self.db, t["request_log"])
        self.nodes = SqlRepository(self.db, t["nodes"])

    @property
    def engine(self) -> Engine | None:
        """The SQLAlchemy engine while open."""
        return self.db.engine

    def open(self, domain: DomainRecords | None = None) -> None:
        """Connect, import a LlamaMan 1.2.1 database once, create tables, run migrations."""
        self.db.open(prepare=lambda engine: import_upstream(engine, self.node, domain))

    def close(self) -> None:
        """Release every pooled connection."""
        self.db.close()

    def __repr__(self) -> str:
        url = self.db.url.render_as_string(hide_password=True)
        return f"SqlStorage(node={self.node!r}, url={url!r})"
