"""Storage backends behind the repository protocols of storage.base."""
from __future__ import annotations

from pathlib import Path

from llamaman.storage._common import check_name
from llamaman.storage.base import Storage


def open_storage(
    *,
    node: str,
    data_dir: Path,
    recordings_dir: Path | None = None,
    database_url: str | None = None,
) -> Storage:
    """Build the backend the config selects (SQL when database_url is set, else JSON).

    Does no I/O: call open() on the result to create files/tables and migrate.
    recordings_dir defaults to data_dir/request_log and is ignored by the SQL backend.
    """
    check_name(node, "node name")
    if database_url:
        from llamaman.storage.sql_store import SqlStorage  # SQLAlchemy only when needed

        return SqlStorage(node=node, database_url=database_url)
    from llamaman.storage.json_store import JsonStorage

    data_dir = Path(data_dir)
    recordings = Path(recordings_dir) if recordings_dir else data_dir / "request_log"
    return JsonStorage(node=node, data_dir=data_dir, recordings_dir=recordings)


__all__ = ["Storage", "open_storage"]
