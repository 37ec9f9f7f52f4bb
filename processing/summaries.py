"""Daily and weekly summaries of a patient, recomputed from the stored strides (idempotent).

A day's metrics are the medians of its strides (:data:`insole_common.metrics.DAILY_METRICS`, over both feet
and per side); a week's are the medians of its days' values, counts summed. Days and weeks are those of
:mod:`insole_common.calendar`.
"""

from __future__ import annotations

import pandas as pd

from insole_common import metrics as C
from insole_common.calendar import iso_week, week_days
from storage.store import Store


def daily_metrics(table: pd.DataFrame) -> dict[str, float | int | None]:
    """One day's metrics from its strides: the median of each of :data:`insole_common.metrics.DAILY_METRICS`, over both
    feet and per side (``{metric}_L`` / ``{metric}_R``: limp and one-sided changes need them),
    and the stride counts. The service's daily summaries and the detection cohorts both use it."""
    metrics: dict[str, float | int | None] = {}
    side = table["side"] if "side" in table else pd.Series(dtype=object)
    for col in C.DAILY_METRICS:
        if col not in table:
            continue
        values = pd.to_numeric(table[col], errors="coerce")
        metrics[col] = float(values.median()) if values.notna().any() else None
        for s in ("L", "R"):
            side_values = values[side == s].dropna()
            metrics[f"{col}_{s}"] = float(side_values.median()) if len(side_values) else None
    for s in ("L", "R"):
        metrics[f"strides_{s}_n"] = int((side == s).sum())
    return metrics


def update_daily_summary(store: Store, patient: str, day: str) -> None:
    """Recompute one patient-day from its stored strides (idempotent)."""
    strides = store.day_strides(patient, day)
    metrics = daily_metrics(strides) if len(strides) else {}
    store.save_daily_summary(patient, day, store.day_sessions_n(patient, day), len(strides), metrics)


def weekly_metrics(daily: pd.DataFrame) -> dict[str, float | int | None]:
    """One ISO week's metrics from its daily summaries (rows of :func:`daily_metrics` output): the median of
    each daily value over the days that have one (as the dashboard's weekly trend), counts (``*_n``) summed."""
    out: dict[str, float | int | None] = {}
    for col in daily.columns:
        values = pd.to_numeric(daily[col], errors="coerce").dropna()
        if col.endswith("_n"):
            out[col] = int(values.sum())
        else:
            out[col] = float(values.median()) if len(values) else None
    return out


def update_weekly_summary(store: Store, patient: str, day: str) -> None:
    """Recompute the ISO week containing ``day`` from its daily summaries (idempotent)."""
    week, _ = iso_week(day)
    monday, sunday = week_days(day)
    rows = store.daily_summaries(patient, monday, sunday)
    metrics = weekly_metrics(pd.DataFrame(list(rows["metrics"]))) if len(rows) else {}
    store.save_weekly_summary(patient, week, monday, len(rows), int(rows["sessions_n"].sum()) if len(rows) else 0,
                              int(rows["strides_n"].sum()) if len(rows) else 0, metrics)


def backfill_weekly_summaries(store: Store) -> int:
    """Weekly summaries for weeks that have daily summaries but none of their own (days stored before
    migration 4); returns how many were written."""
    have = store.weekly_summary_weeks()
    todo: dict[tuple[str, str], str] = {}
    for patient, day in store.daily_summary_days():
        key = (patient, iso_week(day)[0])
        if key not in have:
            todo.setdefault(key, day)
    for (patient, _week), day in todo.items():
        update_weekly_summary(store, patient, day)
    return len(todo)


def daily_table(store: Store, patient: str) -> pd.DataFrame:
    """The patient's daily summaries as one row per day (index ``YYYY-MM-DD``): metrics and ``strides_n``."""
    rows = store.daily_summaries(patient)
    table = pd.DataFrame(list(rows["metrics"]), index=rows["day"].astype(str))
    table["strides_n"] = rows["strides_n"].to_numpy()
    return table.apply(pd.to_numeric, errors="coerce")
