"""Storage behind one interface, two real implementations of the same SQL:
:class:`SQLiteStore`, the embedded default (WAL, so the dashboard can read while the
service writes), and :class:`PostgresStore` (psycopg 3). Both run the same versioned
migrations (:mod:`storage.schema`, which lists every table) and the same test suite.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from insole_common.codec import MAX_FRAMES, Batch, decode_batch, encode_batch, split_payloads
from insole_common.errors import InsoleError
from storage.schema import DASHBOARD_MIGRATIONS, MIGRATIONS, SIGNIN_TABLE_SQL

class RawOverlapError(InsoleError):
    """Batches handed to :meth:`Store.add_raw_payloads` overlap stored frames of their device."""

    reason = "raw_overlap"


class StoreUnavailableError(InsoleError):
    """The database cannot be reached or written right now; the caller should retry later.

    Raised instead of the driver's own error for connection-level failures, so that the
    service keeps the message unacknowledged and tries again rather than dropping it.
    """

    reason = "store_unavailable"


@dataclass(frozen=True)
class StoredBatchResult:
    """What :meth:`Store.add_raw_batch` kept of a batch."""

    accepted_frames_n: int
    duplicate_frames_n: int


class Store(abc.ABC):
    """Everything the processing service and the dashboards persist."""

    @abc.abstractmethod
    def migrate(self) -> int:
        """Apply pending migrations; return the schema version."""

    @abc.abstractmethod
    def open_session(self, session_id: str, patient: str, start_us: int, devices: dict[str, str]) -> bool:
        """Create the session if new; True when it was created."""

    @abc.abstractmethod
    def close_session(self, session_id: str, end_us: int, reason: str) -> bool:
        """Close an open session; True when it was open."""

    @abc.abstractmethod
    def add_raw_batch(self, batch: Batch, patient: str, session_id: str, *, payload: bytes | None = None) -> StoredBatchResult:
        """Keep every frame of ``batch`` not already stored (exactly once per device and seq)."""

    @abc.abstractmethod
    def add_raw_payloads(self, rows: list[tuple]) -> None:
        """Store whole batches: rows of ``(device_id, first_seq, n_frames, session_id, side, collector_time_us,
        payload)``, each device's in sequence order and after everything stored of that device (the caller
        checks with :meth:`raw_end_seq`). Consecutive batches of one device and session go into one row (see
        :func:`runs_of`). Raises :class:`RawOverlapError`, storing nothing, when a device's stored frames
        reach past the first of its rows (stored behind the caller's back)."""

    @abc.abstractmethod
    def raw_end_seq(self, device_id: str) -> int | None:
        """One past the device's highest stored sequence number (None when nothing is stored)."""

    @abc.abstractmethod
    def add_live_strides(self, rows: list[tuple]) -> None:
        """Provisional strides: rows of ``(session_id, side, heel_strike_s, patient, toe_off_s, next_heel_strike_s,
        stride_time_s, stance_time_s, swing_time_s, stored_us)``; a stride already stored is left as it is."""

    @abc.abstractmethod
    def record_rejection(self, time_us: int, topic: str, reason: str, message: str, payload: bytes | None) -> None: ...

    @abc.abstractmethod
    def session_batches(self, session_id: str) -> Iterator[Batch]:
        """The session's stored batches, by side then sequence number."""

    @abc.abstractmethod
    def latest_session_batch(self, session_id: str) -> Batch | None:
        """The session's stored batch with the latest collector time (None when it has none)."""

    @abc.abstractmethod
    def save_session_results(self, session_id: str, patient: str, day: str, strides: pd.DataFrame, summary: dict) -> None:
        """Replace the session's strides and summary (idempotent)."""

    @abc.abstractmethod
    def save_daily_summary(self, patient: str, day: str, sessions_n: int, strides_n: int, metrics: dict) -> None: ...

    @abc.abstractmethod
    def save_weekly_summary(self, patient: str, week: str, week_start: str, days_n: int, sessions_n: int,
                            strides_n: int, metrics: dict) -> None:
        """Insert or replace one patient's ISO-week summary (``week`` like ``2026-W48``)."""

    @abc.abstractmethod
    def query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        """Read-only query for reports, dashboards and tests (``?`` placeholders)."""

    @abc.abstractmethod
    def transaction(self):
        """Context manager grouping several calls into one transaction."""

    @abc.abstractmethod
    def execute(self, sql: str, params: tuple = ()) -> int:
        """One write statement in its own transaction (``?`` placeholders); returns the row count."""


class _SQLStore(Store):
    """The SQL shared by both databases. Subclasses provide ``_tx()`` and the dialect."""

    #: the dialect (a migration's statements marked ``{postgres}`` run on PostgreSQL only), and how it spells an
    #: auto-increment key and a binary column
    DIALECT = "sqlite"
    AUTO_ID = "INTEGER PRIMARY KEY AUTOINCREMENT"
    BLOB = "BLOB"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        #: devices (and so their patients) known to be stored; forgotten when a transaction rolls back
        self._known_devices: set[str] = set()

    @abc.abstractmethod
    def _tx(self):
        """Context manager: one transaction, yielding ``execute(sql, params) -> cursor`` (``?`` placeholders)."""

    def _lock_migrations(self, ex) -> None:
        """Serialise migrations of workers that start together (SQLite: BEGIN IMMEDIATE already does)."""

    def _lock_devices(self, ex, device_ids: list[str]) -> None:
        """Until the transaction ends, keep other writers from storing raw batches of these devices (sorted), so
        that what this one reads of them stays true until it commits (SQLite: BEGIN IMMEDIATE already does). A
        batch inside a stored run does not meet the primary key, so the key alone would not stop a duplicate."""

    def migrate(self) -> int:
        import time as _time

        with self._tx() as ex:
            self._lock_migrations(ex)
            ex("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)")
            current = ex("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            for version, script in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                script = script.replace("{AUTO_ID}", self.AUTO_ID).replace("BYTEA", self.BLOB)
                for statement in filter(str.strip, script.split(";")):
                    statement = statement.strip()
                    if statement.startswith("{postgres}"):
                        if self.DIALECT != "postgres":
                            continue
                        statement = statement.removeprefix("{postgres}")
                    ex(statement)
                ex("INSERT INTO schema_migrations (version, applied_us) VALUES (?, ?)", (version, _time.time_ns() // 1000))
            # the dashboards' and research exports' tables keep their own version log (dashboard_migrations)
            ex("CREATE TABLE IF NOT EXISTS dashboard_migrations (version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)")
            current = ex("SELECT COALESCE(MAX(version), 0) FROM dashboard_migrations").fetchone()[0]
            for version, script in enumerate(DASHBOARD_MIGRATIONS, start=1):
                if version <= current:
                    continue
                for statement in filter(str.strip, script.split(";")):
                    ex(statement)
                ex("INSERT INTO dashboard_migrations (version, applied_us) VALUES (?, ?)", (version, _time.time_ns() // 1000))
            ex(SIGNIN_TABLE_SQL)
        return len(MIGRATIONS)

    @staticmethod
    def _ensure_patient(ex, patient: str, time_us: int) -> None:
        ex("INSERT INTO patients (pseudonym, created_us) VALUES (?, ?) ON CONFLICT (pseudonym) DO NOTHING", (patient, time_us))

    def open_session(self, session_id: str, patient: str, start_us: int, devices: dict[str, str]) -> bool:
        with self._tx() as ex:
            self._ensure_patient(ex, patient, start_us)
            cur = ex(
                "INSERT INTO sessions (session_id, patient, start_us, state, devices_json) VALUES (?, ?, ?, 'open', ?) "
                "ON CONFLICT (session_id) DO NOTHING",
                (session_id, patient, start_us, json.dumps(devices, sort_keys=True)),
            )
            return cur.rowcount == 1

    def close_session(self, session_id: str, end_us: int, reason: str) -> bool:
        with self._tx() as ex:
            cur = ex(
                "UPDATE sessions SET state = 'closed', end_us = ?, close_reason = ? WHERE session_id = ? AND state = 'open'",
                (end_us, reason, session_id),
            )
            return cur.rowcount == 1

    def add_raw_batch(self, batch: Batch, patient: str, session_id: str, *, payload: bytes | None = None) -> StoredBatchResult:
        """``payload``, when given, is the batch's own wire encoding (stored as is when nothing overlaps)."""
        lo, hi = batch.first_seq, batch.first_seq + batch.n_frames
        with self._tx() as ex:
            self._lock_devices(ex, [batch.device_id])
            if batch.device_id not in self._known_devices:
                self._ensure_patient(ex, patient, batch.collector_time_us)
                ex(
                    "INSERT INTO devices (device_id, patient, side, layout_id, first_seen_us) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (device_id) DO NOTHING",
                    (batch.device_id, patient, batch.side, batch.layout_id, batch.collector_time_us),
                )
                self._known_devices.add(batch.device_id)
            # a stored batch overlapping [lo, hi) starts after lo - MAX_FRAMES: a bounded index range
            overlaps = ex(
                "SELECT first_seq, first_seq + n_frames FROM raw_batches WHERE device_id = ? AND first_seq > ? "
                "AND first_seq < ? AND first_seq + n_frames > ? ORDER BY first_seq",
                (batch.device_id, lo - MAX_FRAMES, hi, lo),
            ).fetchall()
            kept = 0
            for a, b in _uncovered(lo, hi, [tuple(r) for r in overlaps]):
                whole = (a, b) == (lo, hi)
                piece = batch if whole else _slice_batch(batch, a - lo, b - lo)
                ex(
                    "INSERT INTO raw_batches (device_id, first_seq, n_frames, session_id, side, collector_time_us, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (piece.device_id, piece.first_seq, piece.n_frames, session_id, piece.side, piece.collector_time_us,
                     payload if whole and payload is not None else encode_batch(piece)),
                )
                kept += b - a
                self._note_ranges([(batch.device_id, a, b - a, session_id, batch.side)])
        return StoredBatchResult(kept, batch.n_frames - kept)

    #: widens a session's range of a device to take in newly stored batches
    _RANGE_UPSERT = (
        "INSERT INTO raw_session_ranges (session_id, device_id, side, first_seq, end_seq) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (session_id, device_id) DO UPDATE SET "
        "first_seq = CASE WHEN excluded.first_seq < raw_session_ranges.first_seq "
        "THEN excluded.first_seq ELSE raw_session_ranges.first_seq END, "
        "end_seq = CASE WHEN excluded.end_seq > raw_session_ranges.end_seq "
        "THEN excluded.end_seq ELSE raw_session_ranges.end_seq END")

    def _note_ranges(self, rows) -> None:
        """Record in ``raw_session_ranges`` the sequence ranges of stored rows ``(device_id, first_seq, n_frames,
        session_id, side, ...)`` (in the caller's transaction)."""
        ranges: dict[tuple[str, str], list] = {}
        for device_id, first_seq, n_frames, session_id, side, *_ in rows:
            r = ranges.get((session_id, device_id))
            if r is None:
                ranges[(session_id, device_id)] = [side, first_seq, first_seq + n_frames]
            else:
                r[1] = min(r[1], first_seq)
                r[2] = max(r[2], first_seq + n_frames)
        self._executemany(self._RANGE_UPSERT, [(sid, dev, side, lo, hi) for (sid, dev), (side, lo, hi) in ranges.items()])

    @abc.abstractmethod
    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        """One statement for many rows (``?`` placeholders), inside the current transaction."""

    def add_raw_payloads(self, rows: list[tuple]) -> None:
        if not rows:
            return
        runs = runs_of(rows)
        with self._tx() as ex:
            firsts: dict[str, int] = {}
            for device_id, first_seq, *_ in runs:
                firsts.setdefault(device_id, first_seq)
            devices = sorted(firsts)
            self._lock_devices(ex, devices)
            for device_id, end in self._stored_ends(ex, devices).items():
                if end is not None and end > firsts[device_id]:
                    raise RawOverlapError(f"{device_id}: frames up to {end - 1} are stored already, the batches "
                                          f"to add start at {firsts[device_id]}")
            self._executemany(
                "INSERT INTO raw_batches (device_id, first_seq, n_frames, session_id, side, collector_time_us, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", runs)
            self._note_ranges(runs)

    @staticmethod
    def _stored_ends(ex, device_ids: list[str]) -> dict[str, int | None]:
        """Per device one past its highest stored sequence number (None: nothing stored), in one statement (one
        round trip on PostgreSQL); the row with the highest first_seq ends last, since rows never overlap."""
        rows = ex("SELECT v.column1, (SELECT r.first_seq + r.n_frames FROM raw_batches r WHERE r.device_id = v.column1 "
                  f"ORDER BY r.first_seq DESC LIMIT 1) FROM (VALUES {', '.join(['(?)'] * len(device_ids))}) AS v",
                  tuple(device_ids)).fetchall()
        return {device_id: None if end is None else int(end) for device_id, end in rows}

    def raw_end_seq(self, device_id: str) -> int | None:
        with self._tx() as ex:
            return self._stored_ends(ex, [device_id])[device_id]

    def add_live_strides(self, rows: list[tuple]) -> None:
        if not rows:
            return
        with self._tx():
            self._executemany(
                "INSERT INTO live_strides (session_id, side, heel_strike_s, patient, toe_off_s, next_heel_strike_s, "
                "stride_time_s, stance_time_s, swing_time_s, stored_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id, side, heel_strike_s) DO NOTHING", rows)

    def record_rejection(self, time_us: int, topic: str, reason: str, message: str, payload: bytes | None) -> None:
        with self._tx() as ex:
            ex(
                "INSERT INTO rejections (time_us, topic, reason, message, payload_head) VALUES (?, ?, ?, ?, ?)",
                (time_us, topic[:500], reason, message[:1000], None if payload is None else bytes(payload[:64])),
            )

    def session_batches(self, session_id: str) -> Iterator[Batch]:
        with self._tx() as ex:
            rows = ex(f"SELECT r.payload {_SESSION_RAW} ORDER BY r.side, r.first_seq", (session_id,)).fetchall()
        for (payload,) in rows:
            for piece in split_payloads(payload):
                yield decode_batch(piece)

    def latest_session_batch(self, session_id: str) -> Batch | None:
        with self._tx() as ex:  # per device its last row in the session; of their last batches the latest
            rows = ex("SELECT (SELECT r.payload FROM raw_batches r WHERE r.device_id = s.device_id "
                      "AND r.first_seq >= s.first_seq AND r.first_seq < s.end_seq AND r.session_id = s.session_id "
                      "ORDER BY r.first_seq DESC LIMIT 1) FROM raw_session_ranges s WHERE s.session_id = ?",
                      (session_id,)).fetchall()
        last = [decode_batch(split_payloads(payload)[-1]) for (payload,) in rows if payload is not None]
        return max(last, key=lambda b: b.collector_time_us, default=None)

    def save_session_results(self, session_id: str, patient: str, day: str, strides: pd.DataFrame, summary: dict) -> None:
        rows = [
            (session_id, r["side"], float(r["heel_strike_s"]), patient, day, json.dumps(_jsonable(r)))
            for r in strides.to_dict("records")
        ]
        with self._tx() as ex:
            ex("DELETE FROM strides WHERE session_id = ?", (session_id,))
            for row in rows:
                ex("INSERT INTO strides (session_id, side, heel_strike_s, patient, day, metrics_json) VALUES (?, ?, ?, ?, ?, ?)", row)
            ex(
                "INSERT INTO session_summaries (session_id, patient, day, strides_n, summary_json) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET patient = excluded.patient, day = excluded.day, "
                "strides_n = excluded.strides_n, summary_json = excluded.summary_json",
                (session_id, patient, day, len(rows), json.dumps(_jsonable(summary), sort_keys=True)),
            )

    def save_daily_summary(self, patient: str, day: str, sessions_n: int, strides_n: int, metrics: dict) -> None:
        with self._tx() as ex:
            ex(
                "INSERT INTO daily_summaries (patient, day, sessions_n, strides_n, metrics_json) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (patient, day) DO UPDATE SET sessions_n = excluded.sessions_n, "
                "strides_n = excluded.strides_n, metrics_json = excluded.metrics_json",
                (patient, day, sessions_n, strides_n, json.dumps(_jsonable(metrics), sort_keys=True)),
            )

    def save_weekly_summary(self, patient: str, week: str, week_start: str, days_n: int, sessions_n: int,
                            strides_n: int, metrics: dict) -> None:
        with self._tx() as ex:
            ex(
                "INSERT INTO weekly_summaries (patient, week, week_start, days_n, sessions_n, strides_n, metrics_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (patient, week) DO UPDATE SET week_start = excluded.week_start, "
                "days_n = excluded.days_n, sessions_n = excluded.sessions_n, strides_n = excluded.strides_n, "
                "metrics_json = excluded.metrics_json",
                (patient, week, week_start, days_n, sessions_n, strides_n, json.dumps(_jsonable(metrics), sort_keys=True)),
            )

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
        self._conn = None
        self._connect()

    def _connect(self):
        import psycopg

        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            try:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            except psycopg.errors.UniqueViolation:  # another worker created it at the same moment
                pass
            conn.execute(f'SET search_path TO "{self.schema}"')
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"PostgreSQL: {exc}") from exc
        self._conn = conn
        return conn

    @contextmanager
    def _tx(self):
        import psycopg

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
        with self._conn.cursor() as cur:  # the connection of the transaction _tx() holds open
            cur.executemany(sql.replace("?", "%s"), rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


#: FROM clause of a session's raw batches (``r``), one parameter: the session id. Each device's rows are a
#: range of its primary key (device_id, first_seq); ``session_id`` is checked because sessions of a device
#: can interleave when late batches arrive (a batch belongs to the session open when it arrived)
_SESSION_RAW = ("FROM raw_session_ranges s JOIN raw_batches r ON r.device_id = s.device_id "
                "AND r.first_seq >= s.first_seq AND r.first_seq < s.end_seq AND r.session_id = s.session_id "
                "WHERE s.session_id = ?")


def runs_of(rows: list[tuple]) -> list[tuple]:
    """Rows of ``raw_batches`` for batches given as rows ``(device_id, first_seq, n_frames, session_id, side,
    collector_time_us, payload)``: consecutive batches of one device and session (each starting where the
    one before it ended) become one row of up to ``MAX_FRAMES`` frames, with the first batch's
    ``collector_time_us`` and the payloads end to end. One row per batch would cost an entry in the
    primary key each: measured 12.6-14.6 -> 7.6-8.3 us per stored batch (docs/benchmarks.md)."""
    out: list[list] = []
    last: dict[str, list] = {}  # device id -> its latest run
    for device_id, first_seq, n_frames, session_id, side, time_us, payload in rows:
        run = last.get(device_id)
        if (run is not None and run[1] + run[2] == first_seq and run[3] == session_id
                and run[2] + n_frames <= MAX_FRAMES):
            run[2] += n_frames
            run[6].append(payload)
            continue
        run = last[device_id] = [device_id, first_seq, n_frames, session_id, side, time_us, [payload]]
        out.append(run)
    return [(*r[:6], r[6][0] if len(r[6]) == 1 else b"".join(r[6])) for r in out]


def split_raw_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``raw_batches`` (any columns, ``payload`` among them) as one row per stored batch: ``first_seq``,
    ``n_frames``, ``collector_time_us`` and ``payload`` of each batch (decoded and checked), the other
    columns copied from its row."""
    out = []
    for rec in rows.to_dict("records"):
        for piece in split_payloads(rec["payload"]):
            b = decode_batch(piece)
            out.append({**rec, "first_seq": b.first_seq, "n_frames": b.n_frames,
                        "collector_time_us": b.collector_time_us, "payload": piece})
    return pd.DataFrame(out, columns=rows.columns)


def _uncovered(lo: int, hi: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sub-ranges of [lo, hi) not covered by the sorted ranges ``covered``."""
    out, cursor = [], lo
    for a, b in covered:
        if a > cursor:
            out.append((cursor, min(a, hi)))
        cursor = max(cursor, b)
        if cursor >= hi:
            break
    if cursor < hi:
        out.append((cursor, hi))
    return out


def _slice_batch(batch: Batch, start: int, end: int) -> Batch:
    fields = dict(batch.__dict__)
    period_us = 1e6 / batch.sample_rate_hz
    fields.update(
        first_seq=batch.first_seq + start,
        device_time_us=batch.device_time_us + int(round(start * period_us)),
        collector_time_us=batch.collector_time_us + int(round(start * period_us)),
        pressure_raw=batch.pressure_raw[start:end].copy(),
        imu_raw=None if batch.imu_raw is None else batch.imu_raw[start:end].copy(),
    )
    return Batch(**fields)


def _jsonable(obj):
    """NaN -> None and numpy scalars -> Python, so JSON stays standard."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (pd.Timestamp,)):
        return obj.isoformat()
    return obj
