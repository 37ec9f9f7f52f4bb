"""The research exports' de-identification tables (``research_subjects``, ``research_sessions``;
created by :mod:`storage.schema`).

Labels are created on first use with ``secrets.token_hex``, so they cannot be recomputed from the
pseudonym; each subject's date shift is drawn once and stored with its label.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from storage.store import Store


def set_cohort(store: Store, patient: str, cohort: str, *, shift_days: Callable[[], int]) -> None:
    """Put ``patient`` into ``cohort`` (creating its research label when new)."""
    ensure_subject_labels(store, shift_days=shift_days)
    store.execute("UPDATE research_subjects SET cohort = ? WHERE patient = ?", (cohort, patient))


def ensure_subject_labels(store: Store, *, shift_days: Callable[[], int]) -> None:
    """Give every patient without one a random research label and a date shift drawn by ``shift_days``
    (the research exports' policy, :func:`research.deid.random_date_shift_days`; idempotent)."""
    missing = store.query(
        "SELECT p.pseudonym FROM patients p LEFT JOIN research_subjects r ON r.patient = p.pseudonym WHERE r.patient IS NULL")
    for patient in missing["pseudonym"]:
        store.execute("INSERT INTO research_subjects (patient, label, date_shift_days) VALUES (?, ?, ?) "
                      "ON CONFLICT (patient) DO NOTHING", (patient, f"S{secrets.token_hex(4)}", shift_days()))
    unshifted = store.query("SELECT patient FROM research_subjects WHERE date_shift_days IS NULL")
    for patient in unshifted["patient"]:
        store.execute("UPDATE research_subjects SET date_shift_days = ? WHERE patient = ? AND date_shift_days IS NULL",
                      (shift_days(), patient))


def ensure_session_labels(store: Store) -> None:
    """Give every closed session without one a random research label (idempotent)."""
    missing = store.query(
        "SELECT s.session_id FROM sessions s LEFT JOIN research_sessions r ON r.session_id = s.session_id "
        "WHERE r.session_id IS NULL AND s.state = 'closed'")
    if missing.empty:
        return
    with store.transaction():
        for sid in missing["session_id"]:
            store.execute("INSERT INTO research_sessions (session_id, label) VALUES (?, ?) ON CONFLICT (session_id) DO NOTHING",
                          (sid, f"R{secrets.token_hex(6)}"))
