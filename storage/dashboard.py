"""Reads (and the one write, notes) behind the dashboards' pages: sessions and their summaries, notes and the
research exports' labelled sessions (the daily and weekly summaries are read through :mod:`storage.summaries`).
Plain Python values and DataFrames; no access rules here (the caller has already been allowed to see what it
asks for, :mod:`dashboards.deps`).
"""

from __future__ import annotations

import json

import pandas as pd

from storage.rows import first_row
from storage.store import Store


def _int(x) -> int:
    """A cell of an integer column (pandas types a row's cells as any scalar)."""
    return int(x)


def _int_or_none(x) -> int | None:
    return None if x is None or pd.isna(x) else int(x)


# session summaries -------------------------------------------------------------------------------------------
def session_summaries(store: Store, patient: str, first_day: str, last_day: str) -> list[tuple[str, int, dict]]:
    """``(day, strides_n, summary)`` of the patient's analysed sessions on days ``first_day .. last_day``."""
    rows = store.query("SELECT day, strides_n, summary_json FROM session_summaries WHERE patient = ? AND day >= ? "
                       "AND day <= ?", (patient, first_day, last_day))
    return [(str(d), int(n), json.loads(s)) for d, n, s in rows.itertuples(index=False, name=None)]


# sessions ----------------------------------------------------------------------------------------------
def session_spans(store: Store, patient: str, start_us: int, end_us: int) -> list[tuple[int, int | None]]:
    """``(start_us, end_us or None while open)`` of the patient's sessions that start in ``[start_us, end_us)``."""
    rows = store.query("SELECT start_us, end_us FROM sessions WHERE patient = ? AND start_us >= ? AND start_us < ?",
                       (patient, start_us, end_us))
    return [(int(s), _int_or_none(e)) for s, e in rows.itertuples(index=False, name=None)]


def session_patient(store: Store, session_id: str) -> str | None:
    rows = store.query("SELECT patient FROM sessions WHERE session_id = ?", (session_id,))
    return None if rows.empty else str(rows.iloc[0]["patient"])


def has_open_session(store: Store, patient: str) -> bool:
    return not store.query("SELECT 1 AS x FROM sessions WHERE patient = ? AND state = 'open'", (patient,)).empty


def last_walk(store: Store, patient: str) -> dict | None:
    """The patient's latest analysed session with strides: ``session_id, start_us, end_us, strides_n,
    walking_time_s`` (None when unknown), or None."""
    r = first_row(store, "SELECT s.session_id, s.start_us, s.end_us, ss.strides_n, ss.summary_json FROM sessions s "
                  "JOIN session_summaries ss ON ss.session_id = s.session_id WHERE s.patient = ? AND ss.strides_n > 0 "
                  "ORDER BY s.start_us DESC LIMIT 1", (patient,))
    if r is None:
        return None
    walking = json.loads(r["summary_json"]).get("walking_time_s")
    return {"session_id": str(r["session_id"]), "start_us": int(r["start_us"]), "end_us": _int_or_none(r["end_us"]),
            "strides_n": int(r["strides_n"]), "walking_time_s": None if walking is None else float(walking)}


def session(store: Store, session_id: str) -> dict | None:
    """``session_id, patient, start_us, end_us (None while open), state, close_reason`` of one session."""
    r = first_row(store, "SELECT session_id, patient, start_us, end_us, state, close_reason FROM sessions "
                  "WHERE session_id = ?", (session_id,))
    return None if r is None else {**r, "start_us": int(r["start_us"]), "end_us": _int_or_none(r["end_us"])}


def session_summary(store: Store, session_id: str) -> dict:
    """The stored summary of one session (``{}`` before it is analysed)."""
    r = first_row(store, "SELECT summary_json FROM session_summaries WHERE session_id = ?", (session_id,))
    return {} if r is None else json.loads(r["summary_json"])


def patient_sessions(store: Store, patient: str, *, limit: int, offset: int) -> list[dict]:
    """The patient's sessions, newest first: ``session_id, start_us, end_us, state, strides_n`` (None before
    analysis) and ``summary`` (``{}`` before analysis)."""
    rows = store.query(
        "SELECT s.session_id, s.start_us, s.end_us, s.state, ss.strides_n, ss.summary_json FROM sessions s "
        "LEFT JOIN session_summaries ss ON ss.session_id = s.session_id WHERE s.patient = ? "
        "ORDER BY s.start_us DESC LIMIT ? OFFSET ?", (patient, int(limit), int(offset)))
    return [{"session_id": r.session_id, "start_us": _int(r.start_us), "end_us": _int_or_none(r.end_us), "state": r.state,
             "strides_n": _int_or_none(r.strides_n),
             "summary": json.loads(r.summary_json) if isinstance(r.summary_json, str) else {}}
            for r in rows.itertuples()]


# notes -------------------------------------------------------------------------------------------------
def notes(store: Store, patient: str) -> list[dict]:
    """``id, author, time_us, text`` of the patient's notes, newest first."""
    rows = store.query("SELECT id, author, time_us, text FROM notes WHERE patient = ? ORDER BY time_us DESC, id DESC",
                       (patient,))
    return [{"id": _int(r.id), "author": r.author, "time_us": _int(r.time_us), "text": r.text} for r in rows.itertuples()]


def add_note(store: Store, patient: str, author: str, text: str, time_us: int) -> None:
    store.execute("INSERT INTO notes (patient, author, time_us, text) VALUES (?, ?, ?, ?)", (patient, author, time_us, text))


# research labels (storage.research creates them) ---------------------------------------------------------
def cohorts(store: Store) -> list[str]:
    return sorted(store.query("SELECT DISTINCT cohort FROM research_subjects")["cohort"].astype(str))


def labelled_sessions(store: Store, *, cohort: str | None = None) -> list[dict]:
    """Closed sessions that have research labels (optionally of one cohort): ``session`` (its label), ``subject``,
    ``cohort``, ``date_shift_days``, ``start_us``, ``end_us``, ``strides_n`` (None before analysis) and
    ``time_zone`` (the patient's, for the session's day; UTC for a patient without a ``patients`` row)."""
    sql = ("SELECT rs.label AS session, sub.label AS subject, sub.cohort, sub.date_shift_days, s.start_us, s.end_us, "
           "ss.strides_n, COALESCE(p.time_zone, 'UTC') AS time_zone FROM sessions s "
           "JOIN research_sessions rs ON rs.session_id = s.session_id "
           "JOIN research_subjects sub ON sub.patient = s.patient "
           "LEFT JOIN patients p ON p.pseudonym = s.patient "
           "LEFT JOIN session_summaries ss ON ss.session_id = s.session_id WHERE s.state = 'closed'")
    params: tuple = ()
    if cohort:
        sql += " AND sub.cohort = ?"
        params += (cohort,)
    return [{"session": str(r.session), "subject": str(r.subject), "cohort": str(r.cohort),
             "date_shift_days": _int(r.date_shift_days), "start_us": _int(r.start_us), "end_us": _int_or_none(r.end_us),
             "strides_n": _int_or_none(r.strides_n), "time_zone": str(r.time_zone)}
            for r in store.query(sql, params).itertuples()]


def labelled_session(store: Store, label: str) -> dict | None:
    """``session_id, subject, cohort, date_shift_days, start_us, time_zone`` (the patient's) behind a research
    session label."""
    r = first_row(store,
                  "SELECT s.session_id, sub.label AS subject, sub.cohort, sub.date_shift_days, s.start_us, "
                  "COALESCE(p.time_zone, 'UTC') AS time_zone FROM research_sessions rs "
                  "JOIN sessions s ON s.session_id = rs.session_id JOIN research_subjects sub ON sub.patient = s.patient "
                  "LEFT JOIN patients p ON p.pseudonym = s.patient WHERE rs.label = ?", (label,))
    return None if r is None else {**r, "date_shift_days": int(r["date_shift_days"]), "start_us": int(r["start_us"]),
                                   "time_zone": str(r["time_zone"])}

