"""Daily and weekly summaries (``daily_summaries``, ``weekly_summaries``) and the reads they are computed from
(a day's strides and sessions). What goes into them is :mod:`processing.summaries`'s business.

Their contents are read only here: :meth:`Summaries.daily_summaries` (one patient's days),
:func:`last_summary_day` and :func:`weekly_summaries` (weeks of any patients); the dashboards, the demo's
report, compensation detection and the weekly summaries use these."""

from __future__ import annotations

import json

import pandas as pd

from storage.base import StoreBase, jsonable


def weekly_summaries(store: StoreBase, patients: list[str] | None = None) -> pd.DataFrame:
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


def last_summary_day(store: StoreBase, patient: str) -> str | None:
    """The latest day with a daily summary."""
    last = store.query("SELECT MAX(day) AS d FROM daily_summaries WHERE patient = ?", (patient,)).iloc[0]["d"]
    return None if last is None or pd.isna(last) else str(last)


class Summaries(StoreBase):
    """The store's daily and weekly summaries (a mixin of :class:`storage.store.Store`)."""

    def day_strides(self, patient: str, day: str) -> pd.DataFrame:
        """The patient's stored strides of ``day``: one row per stride, its metrics as columns (no columns when
        there are none)."""
        rows = self._rows("SELECT metrics_json FROM strides WHERE patient = ? AND day = ? "
                          "ORDER BY session_id, heel_strike_s, side", (patient, day))
        return pd.DataFrame([json.loads(m) for (m,) in rows])

    def day_sessions_n(self, patient: str, day: str) -> int:
        """How many of the patient's sessions of ``day`` have their results stored."""
        rows = self._rows("SELECT COUNT(*) FROM session_summaries WHERE patient = ? AND day = ?", (patient, day))
        return int(rows[0][0])

    def save_daily_summary(self, patient: str, day: str, sessions_n: int, strides_n: int, metrics: dict) -> None:
        """Insert or replace one patient-day's summary."""
        with self._tx() as ex:
            ex(
                "INSERT INTO daily_summaries (patient, day, sessions_n, strides_n, metrics_json) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (patient, day) DO UPDATE SET sessions_n = excluded.sessions_n, "
                "strides_n = excluded.strides_n, metrics_json = excluded.metrics_json",
                (patient, day, sessions_n, strides_n, json.dumps(jsonable(metrics), sort_keys=True)),
            )

    def daily_summaries(self, patient: str, first_day: str | None = None, last_day: str | None = None) -> pd.DataFrame:
        """The patient's daily summaries from ``first_day`` to ``last_day`` (inclusive; None: no limit) by day:
        columns ``day``, ``sessions_n``, ``strides_n`` and ``metrics`` (a dict per day)."""
        sql, params = "SELECT day, sessions_n, strides_n, metrics_json FROM daily_summaries WHERE patient = ?", [patient]
        if first_day is not None:
            sql, params = sql + " AND day >= ?", [*params, first_day]
        if last_day is not None:
            sql, params = sql + " AND day <= ?", [*params, last_day]
        rows = self._rows(sql + " ORDER BY day", tuple(params))
        return pd.DataFrame([(str(d), int(s), int(n), json.loads(m)) for d, s, n, m in rows],
                            columns=["day", "sessions_n", "strides_n", "metrics"])

    def daily_summary_days(self) -> list[tuple[str, str]]:
        """``(patient, day)`` of every daily summary."""
        return [(str(p), str(d)) for p, d in self._rows("SELECT patient, day FROM daily_summaries")]

    def save_weekly_summary(self, patient: str, week: str, week_start: str, days_n: int, sessions_n: int,
                            strides_n: int, metrics: dict) -> None:
        """Insert or replace one patient's ISO-week summary (``week`` like ``2026-W48``)."""
        with self._tx() as ex:
            ex(
                "INSERT INTO weekly_summaries (patient, week, week_start, days_n, sessions_n, strides_n, metrics_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (patient, week) DO UPDATE SET week_start = excluded.week_start, "
                "days_n = excluded.days_n, sessions_n = excluded.sessions_n, strides_n = excluded.strides_n, "
                "metrics_json = excluded.metrics_json",
                (patient, week, week_start, days_n, sessions_n, strides_n, json.dumps(jsonable(metrics), sort_keys=True)),
            )

    def weekly_summary_weeks(self) -> set[tuple[str, str]]:
        """``(patient, week)`` of every weekly summary."""
        return {(str(p), str(w)) for p, w in self._rows("SELECT patient, week FROM weekly_summaries")}
