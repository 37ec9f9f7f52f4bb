"""Durable store-and-forward outbox: a message is on disk before it is published, and
deleted only after the broker acknowledged its QoS 1 publish.

SQLite in WAL mode with ``synchronous=FULL``: a row that :meth:`Outbox.put`
returned for survives a power cut or SIGKILL. Rows are published in insertion
order, so a device's batches never overtake each other. The outbox is bounded
by a byte budget: past :data:`WARN_FRACTIONS` it logs a warning (and reports its
fill level in the collector status); when full it refuses new messages with
:class:`OutboxFullError`, which the collector counts as loss and tells the
patient about, rather than silently dropping older data.

Staging: frames decoded but not yet a whole batch are kept in the ``staged``
table (one row per key, e.g. per insole side), replaced on every notification
and removed in the same transaction that puts the completed batch in the
outbox (:meth:`Outbox.commit`). Staging writes use ``synchronous=NORMAL``: in
WAL mode a committed row survives the process being killed (SIGKILL, crash),
though the last fraction of a second may be lost to a power cut; the next
``synchronous=FULL`` commit makes them power-safe too. After a restart,
:meth:`Outbox.recover_staged` turns staged rows into outbox rows, ahead of
anything new.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from insole_common.errors import InsoleError

log = logging.getLogger(__name__)

WARN_FRACTIONS = (0.5, 0.8, 0.95)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS device_seq (
    device_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    time_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS staged (
    key TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    updated_us INTEGER NOT NULL
);
"""


class OutboxFullError(InsoleError):
    """The outbox reached its disk budget; the message was not stored."""

    reason = "outbox_full"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """A FIFO of MQTT messages on disk. Thread-safe."""

    def __init__(self, path: str | Path, *, budget_bytes: int = 512 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.budget_bytes = budget_bytes
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._recount()
        self._warned = 0.0
        self.refused_n = 0

    def _recount(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])

    def put(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Store one message durably and return its id. Raises OutboxFullError past the budget."""
        size = len(payload) + len(topic)
        with self._lock:
            if self._bytes + size > self.budget_bytes:
                self.refused_n += 1
                raise OutboxFullError(
                    f"outbox {self.path} is full ({self._bytes} of {self.budget_bytes} bytes); "
                    "the broker has been unreachable too long, new data is not being kept"
                )
            cur = self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain, created_us) VALUES (?, ?, ?, ?, ?)",
                (topic, payload, qos, int(retain), time.time_ns() // 1000),
            )
            self._count += 1
            self._bytes += size
            self._check_fill()
            assert cur.lastrowid is not None  # set by the INSERT
            return int(cur.lastrowid)

    def commit(self, rows: list[tuple[str, bytes]], *, stage_key: str, staged: tuple[str, bytes] | None,
               qos: int = 1, seq_mark: tuple[str, int, int] | None = None) -> None:
        """In one transaction: append ``rows`` to the outbox and set (or clear) the staged row ``stage_key``.

        ``seq_mark`` = (device_id, highest sequence number now stored or staged, collector time in us)
        raises that device's high-water mark (:meth:`seq_mark`), atomically with the rows.

        Raises OutboxFullError (storing nothing of ``rows``, but still updating the staged row) past the budget.
        """
        size = sum(len(p) + len(t) for t, p in rows)
        now_us = time.time_ns() // 1000
        with self._lock:
            full = self._bytes + size > self.budget_bytes
            if full:
                self.refused_n += len(rows)
                rows = []
            db = self._db
            if not rows:
                db.execute("PRAGMA synchronous=NORMAL")
            try:
                db.execute("BEGIN IMMEDIATE")
                for t, p in rows:  # every row enters through put(), here inside this transaction
                    self.put(t, p, qos=qos)
                if staged is None:
                    db.execute("DELETE FROM staged WHERE key = ?", (stage_key,))
                else:
                    db.execute(
                        "INSERT INTO staged (key, topic, payload, updated_us) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET topic = excluded.topic, payload = excluded.payload, "
                        "updated_us = excluded.updated_us",
                        (stage_key, staged[0], staged[1], now_us),
                    )
                if seq_mark is not None:
                    db.execute(
                        "INSERT INTO device_seq (device_id, last_seq, time_us) VALUES (?, ?, ?) ON CONFLICT(device_id) "
                        "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq), time_us = excluded.time_us",
                        seq_mark,
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._recount()
                raise
            finally:
                if not rows:
                    db.execute("PRAGMA synchronous=FULL")
        if full:
            raise OutboxFullError(
                f"outbox {self.path} is full ({self._bytes} of {self.budget_bytes} bytes); "
                "the broker has been unreachable too long, new data is not being kept"
            )

    def max_id(self) -> int:
        """The highest id the outbox has given (0 when none)."""
        with self._lock:
            row = self._db.execute("SELECT MAX(n) FROM (SELECT MAX(id) AS n FROM outbox UNION ALL "
                                   "SELECT seq AS n FROM sqlite_sequence WHERE name = 'outbox')").fetchone()
        return int(row[0] or 0)

    def spill(self, rows: list[OutboxItem], delete_ids: list[int], seq_marks: list[tuple[str, int, int]]) -> None:
        """In one transaction: delete the acknowledged ``delete_ids``, store ``rows`` under their own ids, raise
        the devices' sequence marks (see :meth:`commit`). Raises sqlite3 errors (e.g. the disk is full) with
        nothing changed."""
        now_us = time.time_ns() // 1000
        with self._lock:
            db = self._db
            count, size = self._count, self._bytes
            try:
                db.execute("BEGIN IMMEDIATE")
                for item_id in delete_ids:
                    gone = db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload) + LENGTH(topic)",
                                      (item_id,)).fetchone()
                    if gone is not None:
                        count, size = count - 1, size - int(gone[0])
                for r in rows:
                    if db.execute("INSERT OR IGNORE INTO outbox (id, topic, payload, qos, retain, created_us) "
                                  "VALUES (?, ?, ?, ?, ?, ?)",
                                  (r.id, r.topic, r.payload, r.qos, int(r.retain), now_us)).rowcount == 1:
                        count, size = count + 1, size + len(r.payload) + len(r.topic)
                db.executemany(
                    "INSERT INTO device_seq (device_id, last_seq, time_us) VALUES (?, ?, ?) ON CONFLICT(device_id) "
                    "DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq), time_us = excluded.time_us", seq_marks)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._count, self._bytes = count, size

    def peek_range(self, *, after_id: int, before_id: int, limit: int) -> list[OutboxItem]:
        """The oldest messages with ``after_id < id < before_id``, in order."""
        with self._lock:
            rows = self._db.execute("SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? AND id < ? "
                                    "ORDER BY id LIMIT ?", (after_id, before_id, limit)).fetchall()
        return [OutboxItem(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def seq_mark(self, device_id: str) -> tuple[int, int] | None:
        """(highest sequence number ever stored or staged for the device, collector time then), or None."""
        with self._lock:
            row = self._db.execute("SELECT last_seq, time_us FROM device_seq WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def staged(self) -> list[tuple[str, str, bytes]]:
        """Staged rows as (key, topic, payload)."""
        with self._lock:
            rows = self._db.execute("SELECT key, topic, payload FROM staged ORDER BY key").fetchall()
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    def recover_staged(self) -> int:
        """Move every staged row into the outbox (after a crash); return how many were moved."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT topic, payload FROM staged ORDER BY updated_us").fetchall()
            now_us = time.time_ns() // 1000
            db.executemany("INSERT INTO outbox (topic, payload, qos, retain, created_us) VALUES (?, ?, 1, 0, ?)",
                           [(r[0], r[1], now_us) for r in rows])
            db.execute("DELETE FROM staged")
            db.execute("COMMIT")
            self._count += len(rows)
            self._bytes += sum(len(r[0]) + len(r[1]) for r in rows)
        return len(rows)

    def _check_fill(self) -> None:
        fill = self.fill_fraction
        for level in WARN_FRACTIONS:
            if fill >= level > self._warned:
                self._warned = level
                log.warning(
                    "outbox %s is %.0f%% full: the server has been unreachable for a while; recordings are kept "
                    "on this computer until it is back (%d messages waiting, %.0f of %.0f MB)%s",
                    self.path, 100 * fill, self._count, self._bytes / 2**20, self.budget_bytes / 2**20,
                    "; when it is full, new recordings cannot be kept" if level >= 0.8 else "",
                )
        if fill < WARN_FRACTIONS[0]:
            self._warned = 0.0

    def peek(self, *, after_id: int = 0, limit: int = 100) -> list[OutboxItem]:
        """The oldest messages with id > after_id, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        return [OutboxItem(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def ack(self, item_id: int) -> None:
        """Delete a message the broker acknowledged."""
        with self._lock:
            row = self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload) + LENGTH(topic)",
                                   (item_id,)).fetchone()
            if row is not None:
                self._count -= 1
                self._bytes -= int(row[0])
                self._check_fill()

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def fill_fraction(self) -> float:
        return min(1.0, self._bytes / self.budget_bytes) if self.budget_bytes else 1.0

    def close(self) -> None:
        with self._lock:
            self._db.close()
