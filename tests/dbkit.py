"""Helpers for tests that use a real SQL database."""
from __future__ import annotations

from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from llamaman.storage.sql_schema import LATEST


def drop_all_tables(url: str) -> None:
    """Remove every table of the test database."""
    engine = create_engine(url, poolclass=NullPool)
    md = MetaData()
    md.reflect(engine)
    md.drop_all(engine)
    engine.dispose()



def reset_database(url: str) -> None:
    """Empty the tables of an up-to-date schema (fast); drop everything otherwise."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        tables = inspect(conn).get_table_names()
        version = None
        if "schema_version" in tables:
            version = conn.scalar(text("SELECT MAX(version) FROM schema_version"))
        if version == LATEST:
            for table in tables:
                if table != "schema_version":
                    conn.execute(text(f"DELETE FROM `{table}`"))
    engine.dispose()
    if version != LATEST:
        drop_all_tables(url)
