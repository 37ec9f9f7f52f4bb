"""Open the configured database: PostgreSQL when a DSN is given (or ``KINETIC_DATABASE_URL`` is set
and no SQLite file was named), else SQLite (``db`` or ``KINETIC_DB``, default ``kinetic.sqlite``).
Every migration is applied before the store is returned."""

from __future__ import annotations

import os

from storage.store import PostgresStore, SQLiteStore, Store


def open_store(*, db: str | None = None, dsn: str | None = None, pg_schema: str | None = None) -> Store:
    dsn = dsn or (None if db else os.environ.get("KINETIC_DATABASE_URL"))
    store: Store
    if dsn:
        store = PostgresStore(dsn, schema=pg_schema or "public")
    else:
        store = SQLiteStore(db or os.environ.get("KINETIC_DB", "kinetic.sqlite"))
    store.migrate()
    return store
