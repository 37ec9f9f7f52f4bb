"""Durable store-and-forward outbox: a message is on disk before it is published, and
deleted only after the broker acknowledged its QoS 1 publish.

SQLite in WAL mode with ``synchronous=FULL``: a row that :meth:`Outbox.put`
returned for survives a power cut or SIGKILL. Rows are published in insertion
order, so a device's batches never overtake each other. The outbox is bounded
by a byte budget: past :data:`WARN_FRACTIONS` it logs a warning (and reports its
fill level in the collector status); when full it refuses new messages with
:class:`OutboxFullError`, which the collector counts as loss and tells the
patient about, rather than silently dropping older data.
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
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        self._warned = 0.0
        self.refused_n = 0

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
            return int(cur.lastrowid)

    def _check_fill(self) -> None:
        fill = self.fill_fraction
        for level in WARN_FRACTIONS:
            if fill >= level > self._warned:
                self._warned = level
                log.warning("outbox %s is %.0f%% full (%d messages waiting for the broker)", self.path, 100 * fill, self._count)
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
            row = self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload) + LENGTH(topic)", (item_id,)).fetchone()
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
