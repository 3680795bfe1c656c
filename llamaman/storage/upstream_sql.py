"""One-time import of a LlamaMan 1.2.1 database (MariaDB/MySQL) into our schema.

Runs before our migrations touch anything. Upstream's tables (record columns named `data`,
no `schema_version`) are read into new tables `llamaman_import_<name>` in our schema; one
RENAME TABLE statement (atomic in MariaDB/MySQL) then moves upstream's tables to
`llamaman121_<name>`, unchanged, and ours into place. A crash before the rename leaves
upstream's tables as they were (the import restarts on the next start); after it, ours.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, insert, inspect, text

from llamaman.errors import StorageError
from llamaman.storage import upstream
from llamaman.storage.sql_schema import (
    LATEST,
    _migration_lock,
    define_tables,
    schema_version,
)

log = logging.getLogger(__name__)

UPSTREAM_TABLES = ("instances", "downloads", "presets", "users", "api_keys", "settings",
                   "request_log", "cluster_nodes")
BACKUP_PREFIX = "llamaman121_"
STAGE_PREFIX = "llamaman_import_"
_MYSQL = ("mysql", "mariadb")


def is_upstream(conn: Connection) -> bool:
    """True when the database holds LlamaMan 1.2.1's tables and not ours."""
    insp = inspect(conn)
    tables = set(insp.get_table_names())
    if "schema_version" in tables or "instances" not in tables:
        return False
    return "data" in {c["name"] for c in insp.get_columns("instances")}


def import_upstream(engine: Engine, node: str, domain: upstream.DomainRecords | None) -> bool:
    """Import upstream's tables when the database has them; True when it did."""
    with engine.connect() as conn:
        if not is_upstream(conn):
            return False
        if domain is None:
            raise StorageError("this database holds LlamaMan 1.2.1 tables; open the storage with "
                               "llamaman.dropin's records to import them. Nothing was changed.")
        if conn.dialect.name not in _MYSQL:
            raise StorageError("this database holds LlamaMan 1.2.1 tables; llamaman imports "
                               "them on MariaDB/MySQL only. Nothing was changed.")
    with engine.connect() as conn, _migration_lock(conn):
        if not is_upstream(conn):  # another node imported it while we waited for the lock
            return False
        stage = _create_stage(conn)
        with conn.begin():
            _copy_rows(conn, stage, node, domain)
        _swap(conn, [t for t in UPSTREAM_TABLES if t in inspect(conn).get_table_names()])
    log.warning("imported LlamaMan 1.2.1 tables; originals kept as %s<name>", BACKUP_PREFIX)
    return True


def _create_stage(conn: Connection) -> dict[str, Table]:
    """Empty tables of our latest schema under the stage prefix (leftovers dropped first)."""
    ours = define_tables(MetaData(), version=LATEST)
    schema_version.to_metadata(ours)
    stage_md = MetaData()
    stage = {name: table.to_metadata(stage_md, name=STAGE_PREFIX + name)
             for name, table in ours.tables.items()}
    stage_md.drop_all(conn, checkfirst=True)
    stage_md.create_all(conn)
    conn.commit()
    return stage


def _swap(conn: Connection, theirs: list[str]) -> None:
    """Move upstream's tables aside and ours into place, in one atomic statement."""
    pairs = [(t, BACKUP_PREFIX + t) for t in theirs]
    pairs += [(STAGE_PREFIX + t, t) for t in _our_names()]
    conn.execute(text("RENAME TABLE " + ", ".join(f"`{a}` TO `{b}`" for a, b in pairs)))
    conn.commit()


def _our_names() -> list[str]:
    return [*define_tables(MetaData(), version=LATEST).tables, "schema_version"]


def _rows(conn: Connection, table: str) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM `{table}`"))]


def _data(row: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(row.get("data") or "{}")
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {}


def _body(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _copy_rows(conn: Connection, stage: dict[str, Table], node: str, domain: upstream.DomainRecords) -> None:
    """Convert every upstream row into the stage tables."""
    for name, fn in (("instances", domain.instance), ("downloads", upstream.download)):
        for row in _rows(conn, name):
            record = fn({**_data(row), "node_id": row.get("node_id")}, node)
            _put(conn, stage[name], record, node=record["node"])
    for row in _rows(conn, "presets"):
        record = {**domain.preset(row["model_path"], _data(row)), "node": node}
        _put(conn, stage["presets"], record, key=row["model_path"], node=node)
    for row in _rows(conn, "users"):
        record = upstream.user(row)
        _put(conn, stage["users"], record, username_lower=record["username"].lower())
    for row in _rows(conn, "api_keys"):
        record = upstream.api_key(row)
        _put(conn, stage["api_keys"], record, key_hash=record["hash"])
    _copy_settings(conn, stage["settings"], domain)
    _copy_request_log(conn, stage["request_log"])
    conn.execute(insert(stage["schema_version"]),
                 [{"version": v, "applied_at": time.time()} for v in range(1, LATEST + 1)])


def _put(conn: Connection, table: Table, record: dict[str, Any], *, key: str | None = None,
         **columns: Any) -> None:
    conn.execute(insert(table).values(record_id=key or record["id"], body=_body(record), **columns))


def _copy_settings(conn: Connection, table: Table, domain: upstream.DomainRecords) -> None:
    rows = {r["key"]: _data(r) for r in _rows(conn, "settings")}
    glob, nodes = upstream.settings(rows.get("global", {}))
    domain.sidecars(glob.get("model_sources"))
    for scope, doc in {"global": glob, **nodes}.items():
        _put(conn, table, doc, key=scope)


def _copy_request_log(conn: Connection, table: Table) -> None:
    for row in _rows(conn, "request_log"):
        number = row.pop("id")
        row["streamed"] = bool(row.get("streamed"))
        record = upstream.log_record(row, f"{upstream.VERSION}-{number}")
        if record is None:
            continue
        record["created_at"] = row["created_at"].isoformat() if row.get("created_at") else None
        conn.execute(insert(table).values(
            id=record["id"], ts=record["ts"], inst_id=record.get("inst_id"),
            conversation_id=record["conversation_id"], body=_body(record)))
