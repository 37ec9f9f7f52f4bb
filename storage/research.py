"""The research exports' de-identification tables (``research_subjects``, ``research_sessions``;
created by :mod:`storage.schema`) and the export's read of the labelled sessions (:func:`labelled_sessions`).

Labels and each subject's date shift are made on first use by the research exports' policy
(:mod:`research.deid`: a keyed hash of the pseudonym / session id) and stored; a stored label is never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from storage.store import Store


def _int(x) -> int:
    """A cell of an integer column (pandas types a row's cells as any scalar)."""
    return int(x)


def _int_or_none(x) -> int | None:
    return None if x is None or pd.isna(x) else int(x)


def set_cohort(store: Store, patient: str, cohort: str, *, label: Callable[[str], str],
               shift_days: Callable[[str], int]) -> None:
    """Put ``patient`` into ``cohort`` (creating its research label when new)."""
    ensure_subject_labels(store, label=label, shift_days=shift_days)
    store.execute("UPDATE research_subjects SET cohort = ? WHERE patient = ?", (cohort, patient))


def ensure_subject_labels(store: Store, *, label: Callable[[str], str], shift_days: Callable[[str], int]) -> None:
    """Give every patient without one the research label ``label(pseudonym)`` and the date shift
    ``shift_days(pseudonym)`` (the research exports' policy, :mod:`research.deid`; idempotent)."""
    missing = store.query(
        "SELECT p.pseudonym FROM patients p LEFT JOIN research_subjects r ON r.patient = p.pseudonym WHERE r.patient IS NULL")
    for patient in missing["pseudonym"]:
        store.execute("INSERT INTO research_subjects (patient, label, date_shift_days) VALUES (?, ?, ?) "
                      "ON CONFLICT (patient) DO NOTHING", (patient, label(patient), shift_days(patient)))
    unshifted = store.query("SELECT patient FROM research_subjects WHERE date_shift_days IS NULL")
    for patient in unshifted["patient"]:
        store.execute("UPDATE research_subjects SET date_shift_days = ? WHERE patient = ? AND date_shift_days IS NULL",
                      (shift_days(patient), patient))


def ensure_session_labels(store: Store, *, label: Callable[[str], str]) -> None:
    """Give every closed session without one the research label ``label(session_id)`` (idempotent)."""
    missing = store.query(
        "SELECT s.session_id FROM sessions s LEFT JOIN research_sessions r ON r.session_id = s.session_id "
        "WHERE r.session_id IS NULL AND s.state = 'closed'")
    if missing.empty:
        return
    with store.transaction():
        for sid in missing["session_id"]:
            store.execute("INSERT INTO research_sessions (session_id, label) VALUES (?, ?) ON CONFLICT (session_id) DO NOTHING",
                          (sid, label(sid)))


@dataclass(frozen=True)
class LabelledSession:
    """A closed session with its research labels and its subject's (secret) date shift."""

    session_id: str
    patient: str
    start_us: int
    end_us: int | None
    #: research session label
    label: str
    #: research subject label
    subject: str
    cohort: str
    date_shift_days: int
    #: frame numbers the database's raw batches of this session span, both feet (0: it holds none)
    frames_span_n: int = 0


def labelled_sessions(store: Store, *, session: str | None = None, patient: str | None = None,
                      cohort: str | None = None, start_from_us: int | None = None,
                      start_before_us: int | None = None) -> list[LabelledSession]:
    """Closed sessions that have research labels, matching every filter given (``start_from_us`` inclusive,
    ``start_before_us`` exclusive, on the session's real start), ordered by start."""
    sql = ("SELECT s.session_id, s.patient, s.start_us, s.end_us, rs.label, sub.label AS subject, sub.cohort, "
           "sub.date_shift_days, COALESCE(fr.n, 0) AS frames_span_n FROM sessions s "
           "JOIN research_sessions rs ON rs.session_id = s.session_id "
           "JOIN research_subjects sub ON sub.patient = s.patient "
           "LEFT JOIN (SELECT session_id, SUM(end_seq - first_seq) AS n FROM raw_session_ranges GROUP BY session_id) fr "
           "ON fr.session_id = s.session_id WHERE s.state = 'closed'")
    params: tuple = ()
    for cond, value in (("s.session_id = ?", session), ("s.patient = ?", patient), ("sub.cohort = ?", cohort),
                        ("s.start_us >= ?", start_from_us), ("s.start_us < ?", start_before_us)):
        if value is not None:
            sql += f" AND {cond}"
            params += (value,)
    rows = store.query(sql + " ORDER BY s.start_us, s.session_id", params)
    return [LabelledSession(session_id=str(r.session_id), patient=str(r.patient), start_us=_int(r.start_us),
                            end_us=_int_or_none(r.end_us),
                            label=str(r.label), subject=str(r.subject), cohort=str(r.cohort),
                            date_shift_days=_int(r.date_shift_days), frames_span_n=_int(r.frames_span_n))
            for r in rows.itertuples(index=False)]
