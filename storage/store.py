"""Storage behind one interface, two real implementations of the same SQL:
:class:`SQLiteStore`, the embedded default (WAL, so the dashboard can read while the
service writes), and :class:`PostgresStore` (psycopg 3). Both run the same versioned
migrations (:mod:`storage.schema`, which lists every table) and the same test suite.

:class:`Store` is composed of one mixin per concern, each in its own module: connection, dialect and
transactions (:mod:`storage.base`), raw batches and rejections (:mod:`storage.raw`), sessions, their results
and live strides (:mod:`storage.sessions`), daily and weekly summaries (:mod:`storage.summaries`) and
patients (:mod:`storage.patients`). This module runs the migrations and holds the two databases.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from insole_common.codec import MAX_FRAMES
from storage.base import RawOverlapError, StoreUnavailableError
from storage.patients import Patients
from storage.raw import RawBatches, StoredBatchResult, runs_of, split_raw_rows
from storage.schema import DASHBOARD_MIGRATIONS, MIGRATIONS, SIGNIN_TABLE_SQL
from storage.sessions import SessionRow, Sessions, SessionStop
from storage.summaries import Summaries

if TYPE_CHECKING:
    import psycopg

__all__ = ["MAX_FRAMES", "MIGRATIONS", "PostgresStore", "RawOverlapError", "SQLiteStore", "SessionRow", "SessionStop", "Store",
           "StoreUnavailableError", "StoredBatchResult", "runs_of", "split_raw_rows"]


class Store(RawBatches, Sessions, Summaries, Patients):
    """Everything the processing service and the dashboards persist (the typed reads and writes of every
    concern mixin, over the primitives of :class:`storage.base.StoreBase`)."""


class _SQLStore(Store):
    """The SQL shared by both databases. Subclasses provide ``_tx()``, ``_executemany()`` and the dialect."""

    def _lock_migrations(self, ex) -> None:
        """Serialise migrations of workers that start together (SQLite: BEGIN IMMEDIATE already does)."""

    def migrate(self) -> int:
        with self._tx() as ex:
            self._lock_migrations(ex)
            ex("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)")
            current = ex("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            for version, script in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                dialect_script = script.replace("{AUTO_ID}", self.AUTO_ID).replace("BYTEA", self.BLOB)
                for raw_statement in filter(str.strip, dialect_script.split(";")):
                    statement = raw_statement.strip()
                    if statement.startswith("{postgres}"):
                        if self.DIALECT != "postgres":
                            continue
                        statement = statement.removeprefix("{postgres}")
                    ex(statement)
                ex("INSERT INTO schema_migrations (version, applied_us) VALUES (?, ?)", (version, time.time_ns() // 1000))
            # the dashboards' and research exports' tables keep their own version log (dashboard_migrations)
            ex("CREATE TABLE IF NOT EXISTS dashboard_migrations (version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)")
            current = ex("SELECT COALESCE(MAX(version), 0) FROM dashboard_migrations").fetchone()[0]
            for version, script in enumerate(DASHBOARD_MIGRATIONS, start=1):
                if version <= current:
                    continue
                for statement in filter(str.strip, script.split(";")):
                    ex(statement)
                ex("INSERT INTO dashboard_migrations (version, applied_us) VALUES (?, ?)", (version, time.time_ns() // 1000))
            ex(SIGNIN_TABLE_SQL)
        return len(MIGRATIONS)

    def query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        with self._tx() as ex:
            cur = ex(sql, params)
            cols = [d[0] for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def execute(self, sql: str, params: tuple = ()) -> int:
        with self._tx() as ex:
            return ex(sql, params).rowcount

    @contextmanager
    def transaction(self):
        """Group several calls into one transaction (one commit); calls inside join it."""
        with self._tx():
            yield


#: page size of a new SQLite database (bytes)
PAGE_SIZE = 16384


class SQLiteStore(_SQLStore):
    """SQLite in WAL mode: one writer (the service), any number of readers (the dashboard)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._depth = 0
        # a new database gets 16 KiB pages (SQLite's default is 4 KiB; ignored for an existing file): a
        # stored batch (~2.3 kB with 16 channels + IMU) fills a 4 KiB page alone, so the commit's WAL
        # writes and the checkpoints copy nearly twice its size; measured 13.4 -> 6.8 us per stored batch
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def _tx(self):
        with self._lock:
            if self._depth:  # inside transaction(): a savepoint, so a failing call undoes only its own writes
                name = f"sp{self._depth}"
                self._depth += 1
                self._db.execute(f"SAVEPOINT {name}")
                try:
                    yield self._db.execute
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute(f"ROLLBACK TO {name}")
                        self._db.execute(f"RELEASE {name}")
                    raise
                else:
                    self._db.execute(f"RELEASE {name}")
                finally:
                    self._depth -= 1
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked by another writer, disk I/O error
                raise StoreUnavailableError(f"SQLite {self.path}: {exc}") from exc
            self._depth = 1
            try:
                yield self._db.execute
            except sqlite3.OperationalError as exc:
                self._rollback()
                raise StoreUnavailableError(f"SQLite {self.path}: {exc}") from exc
            except BaseException:
                self._rollback()
                raise
            finally:
                self._depth = 0
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback()
                raise StoreUnavailableError(f"SQLite {self.path}: {exc}") from exc

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        self._db.executemany(sql, rows)

    def _rollback(self) -> None:
        # after SQLITE_FULL / IOERR / NOMEM SQLite may have rolled back already
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._known_devices.clear()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresStore(_SQLStore):
    """PostgreSQL through psycopg 3. ``schema`` isolates one deployment (or one test)."""

    DIALECT = "postgres"
    AUTO_ID = "BIGSERIAL PRIMARY KEY"
    BLOB = "BYTEA"
    MIGRATION_LOCK_KEY = 0x4B43_4D49  # "KCMI"

    def _lock_migrations(self, ex) -> None:
        ex("SELECT pg_advisory_xact_lock(?)", (self.MIGRATION_LOCK_KEY,))

    def _lock_devices(self, ex, device_ids: list[str]) -> None:
        # transaction-scoped advisory locks taken in the array's (sorted) order, so two writers cannot deadlock;
        # the next statement's snapshot (READ COMMITTED) then sees what the previous holder committed
        ex("SELECT pg_advisory_xact_lock(hashtextextended(d, 0)) FROM unnest(?::text[]) AS d", (list(device_ids),))

    def __init__(self, dsn: str, *, schema: str = "public") -> None:
        super().__init__()
        if not schema.replace("_", "").isalnum():
            raise ValueError(f"schema name {schema!r} must be letters, digits and underscores")
        self.dsn = dsn
        self.schema = schema
        self._conn: psycopg.Connection | None = None
        self._connect()

    def _connect(self):
        import psycopg  # noqa: PLC0415 - libpq only when a PostgreSQL store is opened (SQLite deployments never load it)

        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            # another worker may create the schema at the same moment
            with contextlib.suppress(psycopg.errors.UniqueViolation):
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(f'SET search_path TO "{self.schema}"')
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"PostgreSQL: {exc}") from exc
        self._conn = conn
        return conn

    @contextmanager
    def _tx(self):
        import psycopg  # noqa: PLC0415 - as in _connect

        with self._lock:
            conn = self._conn if self._conn is not None and not self._conn.closed else self._connect()
            try:
                with conn.transaction():
                    cur = conn.cursor()

                    def ex(sql: str, params: tuple = ()):
                        cur.execute(sql.replace("?", "%s"), params)
                        return cur

                    yield ex
            except BaseException as exc:
                self._known_devices.clear()
                if not isinstance(exc, psycopg.OperationalError):
                    raise
                conn.close()  # reconnect on the next call
                raise StoreUnavailableError(f"PostgreSQL: {exc}") from exc

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        assert self._conn is not None  # the connection of the transaction _tx() holds open
        with self._conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
