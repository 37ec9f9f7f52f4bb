"""Patients (``patients``): registration, the time zone their days and weeks are counted in
(:mod:`insole_common.calendar`), and reads of what is stored per patient for provisioning and the demo
(raw frames; ``accounts`` for :func:`account_role`; weekly summaries: :func:`storage.summaries.weekly_summaries`).

The time-zone functions take the store first, so they serve both as functions (``set_patient_time_zone(store, ...)``)
and as methods of :class:`storage.store.Store` (``store.set_patient_time_zone(...)``).
"""

from __future__ import annotations

import time

from insole_common.calendar import DEFAULT_TIME_ZONE, zone
from storage.base import StoreBase


def pseudonyms(store: StoreBase) -> set[str]:
    """Every registered patient's pseudonym."""
    return set(store.query("SELECT pseudonym FROM patients")["pseudonym"].astype(str))


def patient_exists(store: StoreBase, patient: str) -> bool:
    """Whether ``patient`` is registered (one indexed lookup)."""
    return not store.query("SELECT 1 AS x FROM patients WHERE pseudonym = ?", (patient,)).empty


def register_patient(store: StoreBase, pseudonym: str, created_us: int) -> bool:
    """Register ``pseudonym`` (created at ``created_us``); False when it was registered already."""
    return store.execute("INSERT INTO patients (pseudonym, created_us) VALUES (?, ?) ON CONFLICT (pseudonym) DO NOTHING",
                         (pseudonym, created_us)) == 1


def account_role(store: StoreBase, username: str) -> str | None:
    """The role of the dashboard account ``username`` (also when disabled), None when there is none."""
    rows = store.query("SELECT role FROM accounts WHERE username = ?", (username,))
    return None if rows.empty else str(rows.iloc[0]["role"])


def stored_frames_n(store: StoreBase, patients: list[str]) -> int:
    """How many raw frames the store holds of these patients' sessions."""
    if not patients:
        return 0
    placeholders = ", ".join("?" * len(patients))
    sql = ("SELECT COALESCE(SUM(r.n_frames), 0) AS n FROM raw_batches r JOIN sessions s "  # noqa: S608 - only ? placeholders
           f"ON r.session_id = s.session_id WHERE s.patient IN ({placeholders})")
    rows = store.query(sql, tuple(patients))
    return int(rows.iloc[0]["n"])


def set_patient_time_zone(store: StoreBase, patient: str, time_zone: str) -> None:
    """Count the patient's days in ``time_zone`` (an IANA name such as ``Pacific/Auckland``; ValidationError for
    an unknown one). A patient not stored yet is created, so the zone can be set before the first session.
    Days already stored keep the day they were given."""
    zone(time_zone)
    with store._tx() as ex:  # noqa: SLF001 - a method of the store (Patients mixin) written as a function
        store._ensure_patient(ex, patient, time.time_ns() // 1000)  # noqa: SLF001 - as above
        ex("UPDATE patients SET time_zone = ? WHERE pseudonym = ?", (time_zone, patient))


def patient_time_zone(store: StoreBase, patient: str) -> str:
    """The patient's time zone (``UTC`` when none was set or the patient is unknown)."""
    rows = store._rows("SELECT time_zone FROM patients WHERE pseudonym = ?", (patient,))  # noqa: SLF001 - as above
    return str(rows[0][0]) if rows else DEFAULT_TIME_ZONE


class Patients(StoreBase):
    """The patient functions as methods of the store (a mixin of :class:`storage.store.Store`)."""

    set_patient_time_zone = set_patient_time_zone
    patient_time_zone = patient_time_zone
