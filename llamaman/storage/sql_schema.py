"""Tables of the SQL backend and the ordered migrations that build them.

A database records each applied migration in `schema_version`; `migrate()` applies the
missing ones in order. Never edit a released migration: append a new one.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from llamaman.errors import StorageError
from llamaman.storage._common import MAX_KEY_LEN, MAX_NAME_LEN

# 191 characters (764 bytes) is the longest key InnoDB indexes on every row format;
# (node, key) of 764 + 2048 bytes fits its 3072-byte limit and holds long model paths.
NAME_LEN = MAX_NAME_LEN
KEY_LEN = MAX_KEY_LEN
_MYSQL = ("mysql", "mariadb")
_TABLE_KW = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


class ExactString(TypeDecorator):
    """Text of up to `length` characters, compared byte-exactly on every backend.

    MySQL's text collations ignore case and (PAD SPACE) trailing blanks, so there the
    value is stored UTF-8 encoded in VARBINARY, sized for 4-byte characters.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.chars = length

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.VARBINARY(self.chars * 4))
        return dialect.type_descriptor(String(self.chars))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | bytes | None:
        if value is not None and dialect.name in _MYSQL:
            return value.encode("utf-8")
        return value

    def process_result_value(self, value: str | bytes | None, dialect: Dialect) -> str | None:
        return value.decode("utf-8") if isinstance(value, bytes) else value


BODY = Text().with_variant(mysql.LONGTEXT(charset="utf8mb4"), *_MYSQL)
SEQ = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

_version_md = MetaData()
schema_version = Table(
    "schema_version",
    _version_md,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Double, nullable=False),
    **_TABLE_KW,
)


def _record_table(md: MetaData, name: str, *extra: Column | Index, scoped: bool = False) -> Table:
    """A table of JSON record bodies keyed by record_id (and node when scoped)."""
    node = [Column("node", ExactString(NAME_LEN), primary_key=True)] if scoped else []
    return Table(
        name,
        md,
        *node,
        Column("record_id", ExactString(KEY_LEN), primary_key=True),
        *extra,
        Column("body", BODY, nullable=False),
        **_TABLE_KW,
    )


def define_tables(md: MetaData, version: int) -> MetaData:
    """Add the tables as they are at a schema version to md."""
    for name in ("instances", "downloads", "presets"):
        _record_table(md, name, scoped=True)
    user_extra: list[Column | Index] = [
        Column("username_lower", ExactString(NAME_LEN), nullable=False),
        Index("ux_users_username_lower", "username_lower", unique=True),
    ]
    if version >= 2:
        user_extra += [
            Column("setup_guard", Integer, nullable=True),
            Index("ux_users_setup_guard", "setup_guard", unique=True),
        ]
    _record_table(md, "users", *user_extra)
    _record_table(
        md,
        "api_keys",
        Column("key_hash", ExactString(NAME_LEN), nullable=True),
        Index("ix_api_keys_key_hash", "key_hash"),
    )
    _record_table(md, "settings")
    _record_table(md, "nodes")
    _request_log_table(md)
    return md


def _request_log_table(md: MetaData) -> Table:
    return Table(
        "request_log",
        md,
        Column("seq", SEQ, primary_key=True, autoincrement=True),
        Column("id", ExactString(NAME_LEN), nullable=False),
        Column("ts", Double, nullable=False),
        Column("inst_id", ExactString(NAME_LEN), nullable=True),
        Column("conversation_id", ExactString(NAME_LEN), nullable=False),
        Column("body", BODY, nullable=False),
        Index("ix_request_log_ts", "ts"),
        Index("ix_request_log_inst_ts", "inst_id", "ts"),
        Index("ix_request_log_conv_ts", "conversation_id", "ts"),
        Index("ix_request_log_id", "id"),
        **_TABLE_KW,
    )


def _v1_create_tables(conn: Connection) -> None:
    """Create the record tables and the request log."""
    define_tables(MetaData(), version=1).create_all(conn)


def _v2_add_setup_guard(conn: Connection) -> None:
    """Add users.setup_guard: a unique marker that lets only one first-run setup insert."""
    insp = inspect(conn)
    if "setup_guard" not in {c["name"] for c in insp.get_columns("users")}:
        conn.execute(text("ALTER TABLE users ADD COLUMN setup_guard INTEGER NULL"))
    if "ux_users_setup_guard" not in {i["name"] for i in insp.get_indexes("users")}:
        conn.execute(text("CREATE UNIQUE INDEX ux_users_setup_guard ON users (setup_guard)"))


MIGRATIONS: list[Callable[[Connection], None]] = [_v1_create_tables, _v2_add_setup_guard]
LATEST = len(MIGRATIONS)
metadata = define_tables(MetaData(), version=LATEST)


def current_version(conn: Connection) -> int:
    """Return the schema version recorded in the database (0 when empty)."""
    schema_version.create(conn, checkfirst=True)
    return conn.scalar(select(func.max(schema_version.c.version))) or 0


def migrate(engine: Engine, target: int = LATEST) -> int:
    """Apply the missing migrations up to target; return the version found before."""
    with engine.begin() as conn, _migration_lock(conn):
        found = current_version(conn)
        if found > LATEST:
            raise StorageError(
                f"database schema version {found} is newer than this llamaman ({LATEST})"
            )
        for version in range(found + 1, target + 1):
            MIGRATIONS[version - 1](conn)
            conn.execute(insert(schema_version).values(version=version, applied_at=time.time()))
        return found


@contextlib.contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Keep nodes that start together from migrating at once."""
    if conn.dialect.name not in _MYSQL:
        yield  # SQLite: the migration runs in one BEGIN IMMEDIATE transaction
        return
    # MySQL DDL commits implicitly, so a named lock (not the transaction) serialises.
    if conn.scalar(text("SELECT GET_LOCK('llamaman_schema', 60)")) != 1:
        raise StorageError("timed out waiting for another node to migrate the schema")
    try:
        yield
    finally:
        conn.scalar(text("SELECT RELEASE_LOCK('llamaman_schema')"))
