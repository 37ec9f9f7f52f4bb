"""De-identification of everything a researcher receives.

What leaves the clinic in an export (``research.export``) or a dashboard download:

* **subjects** by their research label (``S`` + 8 random hex digits, from
  :mod:`secrets`, stored in ``research_subjects``; never derived from the pseudonym or
  any other identifier). BIDS labels must be alphanumeric, so BIDS uses the same label
  without the hyphen (:func:`bids_label`).
* **sessions** by their research label (``R`` + 12 random hex digits).
* **dates** shifted per subject by a random whole number of weeks (so weekdays and every
  interval between that subject's sessions are kept) that moves them 100-125 years back
  (:func:`random_date_shift_days`); the shift is stored with the label, so two exports of
  the same subject agree, and it is never exported.
* **times within a session** as seconds since the session's start.

Removed: the pseudonym, the session id (it holds the collector's start time), device
ids (serial numbers / Bluetooth addresses), device frame counters (they run across
sessions and would link them; ``frame_index`` counts from the session's first frame
instead), absolute timestamps, account names, notes and flags. :func:`manifest`
writes this list into every export.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from storage import research as label_tables
from storage.store import Store

#: shifts are whole weeks in this range (days, negative = into the past)
SHIFT_WEEKS_MIN = 5218  # ~100 years
SHIFT_WEEKS_MAX = 6522  # ~125 years

#: what an export never contains, and why (written into manifest.json)
REMOVED = {
    "patient_pseudonym": "replaced by a random research subject label",
    "session_id": "replaced by a random research session label (the id holds the collector's start time)",
    "device_id": "removed: device serial numbers and Bluetooth addresses identify the hardware",
    "device_frame_counter": "replaced by frame_index, counted from the session's first frame on each foot",
    "absolute_timestamps": "replaced by seconds since the session's start (t_s)",
    "accounts_notes_flags": "not exported: therapist and patient accounts, clinical notes and flags",
}
SHIFTED = {
    "dates": "every date and date-time is shifted by a random per-subject whole number of weeks into "
             "the years 1900-1926; weekdays and all intervals within a subject are kept; the shift is not exported",
}


def random_date_shift_days() -> int:
    """A fresh random shift in days (a negative whole number of weeks, ~100-125 years)."""
    return -7 * (SHIFT_WEEKS_MIN + secrets.randbelow(SHIFT_WEEKS_MAX - SHIFT_WEEKS_MIN + 1))


def ensure_subject_labels(store: Store) -> None:
    """Give every patient without one a random research label and date shift (idempotent)."""
    label_tables.ensure_subject_labels(store, shift_days=random_date_shift_days)


def ensure_labels(store: Store) -> None:
    """Research labels for every patient and every closed session that has none yet (idempotent)."""
    ensure_subject_labels(store)
    label_tables.ensure_session_labels(store)


def set_cohort(store: Store, patient: str, cohort: str) -> None:
    """Put ``patient`` into ``cohort`` (creating its research label when new)."""
    label_tables.set_cohort(store, patient, cohort, shift_days=random_date_shift_days)


def bids_label(label: str) -> str:
    """A research label as a BIDS label (alphanumeric only)."""
    out = "".join(ch for ch in label if ch.isalnum())
    if not out:
        raise ValueError(f"label {label!r} has no alphanumeric characters")
    return out


@dataclass(frozen=True)
class Subject:
    """One exported subject: the research label and the (secret) date shift."""

    label: str
    cohort: str
    date_shift_days: int

    def shift_time_us(self, time_us: int) -> datetime:
        """A real timestamp (us since the epoch, UTC) as the shifted, naive UTC date-time."""
        real = datetime.fromtimestamp(time_us / 1e6, tz=UTC).replace(tzinfo=None)
        return real + timedelta(days=self.date_shift_days)

    def shift_day(self, day: str) -> str:
        return (date.fromisoformat(day) + timedelta(days=self.date_shift_days)).isoformat()


def manifest(*, fmt: str, subjects_n: int, sessions_n: int, software: str, files: list[str],
             extra: dict | None = None) -> dict:
    """The ``manifest.json`` of an export: what was removed or shifted, and what is inside."""
    return {
        "format": fmt,
        "software": software,
        "subjects_n": subjects_n,
        "sessions_n": sessions_n,
        "deidentification": {"removed": REMOVED, "shifted": SHIFTED,
                             "labels": "random (secrets.token_hex), not derived from any identifier"},
        "time_base": "t_s: seconds since the session's start (when the collector opened the session), on the "
                     "collector's clock to which both insoles are aligned; event and stride times use the same origin",
        "files": sorted(files),
        **(extra or {}),
    }


__all__ = ["REMOVED", "SHIFTED", "Subject", "bids_label", "ensure_labels", "ensure_subject_labels", "manifest",
           "random_date_shift_days", "set_cohort"]
