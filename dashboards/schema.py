"""Tables the dashboards own, created after :meth:`processing.store.Store.migrate`.

``dashboard_migrations``  version log of these steps (separate from ``schema_migrations``)
``research_subjects``     per patient: a random research label (never derived from the
                          pseudonym) and a cohort name; researchers only ever see the label
``research_sessions``     per session: a random research label, for de-identified downloads
``research_subjects.date_shift_days`` (step 2) per patient: a random whole number of weeks,
                          as days (negative), added to every date a researcher sees

Labels are created on first use (:func:`subject_label`, :func:`session_labels`) with
``secrets.token_hex``, so they cannot be recomputed from the pseudonym.
"""

from __future__ import annotations

import secrets
import time

from processing.store import Store

DASHBOARD_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE research_subjects (
        patient TEXT PRIMARY KEY REFERENCES patients(pseudonym),
        label TEXT NOT NULL UNIQUE,
        cohort TEXT NOT NULL DEFAULT 'unassigned'
    );
    CREATE TABLE research_sessions (
        session_id TEXT PRIMARY KEY REFERENCES sessions(session_id),
        label TEXT NOT NULL UNIQUE
    )
    """,
    # 2: per-subject date shift for de-identified exports (research.deid)
    """
    ALTER TABLE research_subjects ADD COLUMN date_shift_days INTEGER
    """,
)


def migrate(store: Store) -> int:
    """Run the store's migrations, then the dashboards' own; return the dashboards' version."""
    store.migrate()
    with store.transaction():
        store.execute("CREATE TABLE IF NOT EXISTS dashboard_migrations (version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)")
        current = int(store.query("SELECT COALESCE(MAX(version), 0) AS v FROM dashboard_migrations").iloc[0]["v"])
        for version, script in enumerate(DASHBOARD_MIGRATIONS, start=1):
            if version <= current:
                continue
            for statement in filter(str.strip, script.split(";")):
                store.execute(statement)
            store.execute("INSERT INTO dashboard_migrations (version, applied_us) VALUES (?, ?)",
                          (version, time.time_ns() // 1000))
    return len(DASHBOARD_MIGRATIONS)


def set_cohort(store: Store, patient: str, cohort: str) -> None:
    """Put ``patient`` into ``cohort`` (creating its research label when new)."""
    ensure_subject_labels(store)
    store.execute("UPDATE research_subjects SET cohort = ? WHERE patient = ?", (cohort, patient))


def ensure_subject_labels(store: Store) -> None:
    """Give every patient without one a random research label and date shift (idempotent)."""
    from research.deid import random_date_shift_days

    missing = store.query(
        "SELECT p.pseudonym FROM patients p LEFT JOIN research_subjects r ON r.patient = p.pseudonym WHERE r.patient IS NULL")
    for patient in missing["pseudonym"]:
        store.execute("INSERT INTO research_subjects (patient, label, date_shift_days) VALUES (?, ?, ?) "
                      "ON CONFLICT (patient) DO NOTHING", (patient, f"S{secrets.token_hex(4)}", random_date_shift_days()))
    unshifted = store.query("SELECT patient FROM research_subjects WHERE date_shift_days IS NULL")
    for patient in unshifted["patient"]:
        store.execute("UPDATE research_subjects SET date_shift_days = ? WHERE patient = ? AND date_shift_days IS NULL",
                      (random_date_shift_days(), patient))


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
