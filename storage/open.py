"""Open the configured database: PostgreSQL when a DSN is given (or ``KINETIC_DATABASE_URL`` is set
and no SQLite file was named), else SQLite (``db`` or ``KINETIC_DB``, default ``kinetic.sqlite``).
Every migration is applied before the store is returned.

``create=False`` (every command that reads or changes what is stored: ``kinetic export``,
``kinetic dashboard`` and its account commands) refuses a SQLite file that does not exist with
:class:`DatabaseMissingError`, instead of creating an empty database where none was asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from insole_common.errors import InsoleError
from storage.store import PostgresStore, SQLiteStore, Store


class DatabaseMissingError(InsoleError):
    """The SQLite database file to read does not exist (and the command does not create one)."""

    reason = "no_database"


def open_store(*, db: str | None = None, dsn: str | None = None, pg_schema: str | None = None,
               create: bool = True) -> Store:
    dsn = dsn or (None if db else os.environ.get("KINETIC_DATABASE_URL"))
    store: Store
    if dsn:
        store = PostgresStore(dsn, schema=pg_schema or "public")
    else:
        path = db or os.environ.get("KINETIC_DB") or "kinetic.sqlite"
        if not create and not Path(path).is_file():
            raise DatabaseMissingError(
                f"no database at {path}: name the processing service's database with --db PATH (or KINETIC_DB), "
                "or PostgreSQL with --dsn; this command does not create one")
        store = SQLiteStore(path)
    store.migrate()
    return store
