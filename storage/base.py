"""The ground every store stands on: its errors, and :class:`StoreBase`, the connection, dialect and
transaction primitives that the concern mixins (:mod:`storage.raw`, :mod:`storage.sessions`,
:mod:`storage.summaries`) build their typed reads and writes on. :mod:`storage.store` composes them into
:class:`~storage.store.Store` and implements the primitives for SQLite and PostgreSQL.
"""

from __future__ import annotations

import abc
import math
import threading

import numpy as np
import pandas as pd

from insole_common.errors import InsoleError


class RawOverlapError(InsoleError):
    """Batches handed to :meth:`Store.add_raw_payloads` overlap stored frames of their device."""

    reason = "raw_overlap"


class StoreUnavailableError(InsoleError):
    """The database cannot be reached or written right now; the caller should retry later.

    Raised instead of the driver's own error for connection-level failures, so that the
    service keeps the message unacknowledged and tries again rather than dropping it.
    """

    reason = "store_unavailable"


class StoreBase(abc.ABC):
    """Connection, dialect and transactions: what every concern mixin of the store relies on."""

    #: the dialect (a migration's statements marked ``{postgres}`` run on PostgreSQL only), and how it spells an
    #: auto-increment key and a binary column
    DIALECT = "sqlite"
    AUTO_ID = "INTEGER PRIMARY KEY AUTOINCREMENT"
    BLOB = "BLOB"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        #: device -> the patient it was found to belong to (storage.devices); forgotten when a transaction rolls back
        self._known_devices: dict[str, str] = {}

    @abc.abstractmethod
    def migrate(self) -> int:
        """Apply pending migrations; return the schema version."""

    @abc.abstractmethod
    def query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        """Read-only query for reports, dashboards and tests (``?`` placeholders)."""

    @abc.abstractmethod
    def transaction(self):
        """Context manager grouping several calls into one transaction."""

    @abc.abstractmethod
    def execute(self, sql: str, params: tuple = ()) -> int:
        """One write statement in its own transaction (``?`` placeholders); returns the row count."""

    @abc.abstractmethod
    def _tx(self):
        """Context manager: one transaction, yielding ``execute(sql, params) -> cursor`` (``?`` placeholders)."""

    @abc.abstractmethod
    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        """One statement for many rows (``?`` placeholders), inside the current transaction."""

    def _lock_devices(self, ex, device_ids: list[str]) -> None:  # noqa: B027 - a no-op by default, on purpose
        """Until the transaction ends, keep other writers from storing raw batches of these devices (sorted), so
        that what this one reads of them stays true until it commits (SQLite: BEGIN IMMEDIATE already does; only
        PostgreSQL overrides it). A batch inside a stored run does not meet the primary key, so the key alone would
        not stop a duplicate."""

    @staticmethod
    def _ensure_patient(ex, patient: str, time_us: int) -> None:
        """Store the patient (first seen at ``time_us``) unless known, in the caller's transaction."""
        ex("INSERT INTO patients (pseudonym, created_us) VALUES (?, ?) ON CONFLICT (pseudonym) DO NOTHING", (patient, time_us))

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Every row of one read statement (its own transaction), as tuples."""
        with self._tx() as ex:
            return [tuple(r) for r in ex(sql, params).fetchall()]


def jsonable(obj):
    """NaN -> None and numpy scalars -> Python, so JSON stays standard."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (pd.Timestamp,)):
        return obj.isoformat()
    return obj
