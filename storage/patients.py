"""Patients as provisioning and the demo see them: registration, and reads of what is stored per patient
(weekly summaries, raw frames).

Tables: ``patients`` (pseudonym, created_us), ``weekly_summaries``, ``raw_batches`` / ``sessions``
(:mod:`storage.schema`); ``accounts`` for :func:`account_role`.
"""

from __future__ import annotations

import json

import pandas as pd

from storage.store import Store


def pseudonyms(store: Store) -> set[str]:
    """Every registered patient's pseudonym."""
    return set(store.query("SELECT pseudonym FROM patients")["pseudonym"].astype(str))


def register_patient(store: Store, pseudonym: str, created_us: int) -> bool:
    """Register ``pseudonym`` (created at ``created_us``); False when it was registered already."""
    return store.execute("INSERT INTO patients (pseudonym, created_us) VALUES (?, ?) ON CONFLICT (pseudonym) DO NOTHING",
                         (pseudonym, created_us)) == 1


def account_role(store: Store, username: str) -> str | None:
    """The role of the dashboard account ``username`` (also when disabled), None when there is none."""
    rows = store.query("SELECT role FROM accounts WHERE username = ?", (username,))
    return None if rows.empty else str(rows.iloc[0]["role"])


def weekly_summaries(store: Store, patients: list[str] | None = None) -> pd.DataFrame:
    """The stored ISO-week summaries (:mod:`processing.summaries`), one row per patient and week, ordered:
    ``patient``, ``week``, ``week_start``, ``days_n``, ``sessions_n``, ``strides_n``, then the metrics."""
    sql = "SELECT patient, week, week_start, days_n, sessions_n, strides_n, metrics_json FROM weekly_summaries"
    params: tuple = ()
    if patients is not None:
        sql += f" WHERE patient IN ({', '.join('?' * len(patients))})" if patients else " WHERE 1 = 0"
        params = tuple(patients)
    rows = store.query(sql + " ORDER BY patient, week", params)
    metrics = pd.DataFrame([json.loads(m) for m in rows["metrics_json"]], index=rows.index)
    return pd.concat([rows.drop(columns="metrics_json"), metrics.apply(pd.to_numeric, errors="coerce")], axis=1)


def stored_frames_n(store: Store, patients: list[str]) -> int:
    """How many raw frames the store holds of these patients' sessions."""
    if not patients:
        return 0
    placeholders = ", ".join("?" * len(patients))
    sql = ("SELECT COALESCE(SUM(r.n_frames), 0) AS n FROM raw_batches r JOIN sessions s "  # noqa: S608 - only ? placeholders
           f"ON r.session_id = s.session_id WHERE s.patient IN ({placeholders})")
    rows = store.query(sql, tuple(patients))
    return int(rows.iloc[0]["n"])
