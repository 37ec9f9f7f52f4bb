"""Patients (``patients``): the time zone their days and weeks are counted in (:mod:`insole_common.calendar`).

The functions take the store first, so they serve both as functions (``set_patient_time_zone(store, ...)``)
and as methods of :class:`storage.store.Store` (``store.set_patient_time_zone(...)``).
"""

from __future__ import annotations

import time

from insole_common.calendar import DEFAULT_TIME_ZONE, zone
from storage.base import StoreBase


def set_patient_time_zone(store: StoreBase, patient: str, time_zone: str) -> None:
    """Count the patient's days in ``time_zone`` (an IANA name such as ``Pacific/Auckland``; ValidationError for
    an unknown one). A patient not stored yet is created, so the zone can be set before the first session.
    Days already stored keep the day they were given."""
    zone(time_zone)
    with store._tx() as ex:
        store._ensure_patient(ex, patient, time.time_ns() // 1000)
        ex("UPDATE patients SET time_zone = ? WHERE pseudonym = ?", (time_zone, patient))


def patient_time_zone(store: StoreBase, patient: str) -> str:
    """The patient's time zone (``UTC`` when none was set or the patient is unknown)."""
    rows = store._rows("SELECT time_zone FROM patients WHERE pseudonym = ?", (patient,))
    return str(rows[0][0]) if rows else DEFAULT_TIME_ZONE


class Patients(StoreBase):
    """The patient functions as methods of the store (a mixin of :class:`storage.store.Store`)."""

    set_patient_time_zone = set_patient_time_zone
    patient_time_zone = patient_time_zone
