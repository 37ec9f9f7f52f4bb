"""What the dashboards show, as plain dicts (the JSON API's bodies), from the reads of :mod:`storage.dashboard`.

Everything here takes a :class:`storage.store.Store` and a pseudonym or session id
that the caller has already been allowed to see (access rules live in :mod:`dashboards.deps`);
nothing here checks roles. Days and weeks are those of :mod:`insole_common.calendar`, counted in the patient's
time zone (``patients.time_zone``, read once per patient: :func:`patient_week`, :func:`sessions`); "this week"
means the seven days ending the patient's today. The daily and weekly tables are the stored summaries
(:mod:`processing.summaries`, read through :mod:`storage.summaries`), not recomputed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from dashboards import flag_text
from dashboards.flag_text import SERIES_OF
from insole_common import metrics as C
from insole_common.calendar import day_of, day_start_us, today_in, week_window
from insole_common.metrics import STANCE_SYMMETRY_PCT, TREND_METRICS
from processing.analytics import symmetry_index
from research.deid import Subject, ensure_labels, ensure_subject_labels
from storage import dashboard as db, flags as stored_flags
from storage.patients import patient_time_zone
from storage.store import Store
from storage.strides import session_strides
from storage.summaries import weekly_summaries

__all__ = ["SERIES_OF"]  # the detector's series behind a trend metric (its home: dashboards.flag_text)

#: per-stride table columns shown in the session drill-down
STRIDE_TABLE_COLS = (C.SIDE, C.HEEL_STRIKE_S, C.STRIDE_TIME_S, C.STANCE_TIME_S, C.STANCE_PCT, C.CADENCE_STEPS_PER_MIN,
                     C.STRIDE_LENGTH_M, C.GAIT_SPEED_M_S, C.COP_ML_MEAN_FW, C.LATERAL_LOAD_FRACTION,
                     C.HEEL_LOAD_FRACTION, C.PEAK_HEEL_LOAD)
#: label, unit and decimals of the stride table's columns that are not metrics of the catalogue
_STRIDE_TABLE_OTHERS = {C.SIDE: ("Foot", "", 0), C.HEEL_STRIKE_S: ("Heel strike", "s from start", 2)}


def _clean(x):
    """NaN/inf -> None, numpy -> Python, for JSON."""
    if isinstance(x, (np.generic,)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# daily and weekly metrics -----------------------------------------------------------------------
def _with_trend_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (stored daily or weekly summaries) with :data:`STANCE_SYMMETRY_PCT` from its per-side stance
    times (:func:`processing.analytics.symmetry_index`, as the detector; signed, positive = longer stance on the
    left) and every :data:`TREND_METRICS` column numeric (NaN where missing)."""
    left, right = f"{C.STANCE_TIME_S}_L", f"{C.STANCE_TIME_S}_R"
    if left in table and right in table:
        table[STANCE_SYMMETRY_PCT] = symmetry_index(table[left], table[right])
    for m in TREND_METRICS:
        table[m.key] = pd.to_numeric(table[m.key], errors="coerce") if m.key in table else np.nan
    return table


def daily_table(store: Store, patient: str, *, since: str | None = None) -> pd.DataFrame:
    """One row per day with data: ``day``, ``sessions_n``, ``strides_n``, the stored daily medians and the
    stance symmetry."""
    rows = store.daily_summaries(patient, first_day=since)
    metrics = pd.DataFrame(list(rows["metrics"]), index=rows.index)
    return _with_trend_metrics(pd.concat([rows[["day", "sessions_n", "strides_n"]], metrics], axis=1))


def baselines(store: Store, patient: str) -> dict[str, dict]:
    """The detector's stored baseline per trend metric (mean, SD, its real-change ``threshold`` and band), for the
    metrics it watches as one series (``stance_symmetry_pct``: ``si_stance_time_s``); per-side series are in
    :func:`trends` under their own keys."""
    stored = stored_flags.baselines(store, patient)
    return {m.key: stored[SERIES_OF.get(m.key, m.key)] for m in TREND_METRICS if SERIES_OF.get(m.key, m.key) in stored}


def flags(store: Store, patient: str, *, since: str | None = None) -> list[dict]:
    """Every stored flag event of the patient, newest first, with the metric's label and unit, the event in words
    (:func:`dashboards.flag_text.event_words`, ``sentence``) and its numbers rounded (catalogue decimals + 1)."""
    out = []
    for f in stored_flags.flags(store, patient, since=since):
        d = flag_text.display(f["metric"])
        rounded = {k: d.stored(f[k]) for k in ("baseline", "current", "threshold")}
        rounded["effect_size"] = None if f["effect_size"] is None else round(float(f["effect_size"]), 2)
        unit = d.unit if d.metric is None else d.metric.unit
        out.append({**f, **rounded, "metric_label": d.label, "unit": unit, "words": flag_text.event_words(f),
                    "sentence": flag_text.sentence(f), "day_text": flag_text.day_text(f["day"]),
                    "evidence": flag_text.rounded_evidence(f["metric"], f["evidence"])})
    return out


def watched_series(stored: dict[str, dict], flag_events: list[dict]) -> list[tuple[C.Metric, str, str | None]]:
    """``(metric, series, side)`` of every trend chart: per side (``{key}_L``, ``{key}_R``) where the detector
    watches the metric per side (a stored baseline or flag of a side series), else the metric's own series."""
    named = set(stored) | {f["metric"] for f in flag_events}
    out: list[tuple[C.Metric, str, str | None]] = []
    for m in TREND_METRICS:
        if any(f"{m.key}_{side}" in named for side in ("L", "R")):
            out += [(m, f"{m.key}_{side}", side) for side in ("L", "R")]
        else:
            out.append((m, SERIES_OF.get(m.key, m.key), None))
    return out


def flag_spans(series: str, flag_events: list[dict], last_day: str | None) -> list[dict]:
    """The spans a series was flagged: each episode from its first raise to its clearing (still open: to
    ``last_day``, the latest day with data or the latest raise)."""
    spans: dict[str, dict] = {}
    for f in flag_events:
        if f["metric"] != series or f["state"] != "raised":
            continue
        since = f.get("since_day") or f["day"]
        end = f.get("cleared_day") or (max(last_day or f["day"], f["day"]) if f.get("active") else f["day"])
        span = spans.setdefault(since, {"from": since, "to": end, "active": bool(f.get("active"))})
        span["to"] = max(span["to"], end)
        span["active"] = span["active"] or bool(f.get("active"))
    return sorted(spans.values(), key=lambda sp: sp["from"])


def _days(span: dict) -> list[str]:
    first, last = date.fromisoformat(span["from"]), date.fromisoformat(span["to"])
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _baseline_out(b: dict | None, disp: flag_text.Display) -> dict | None:
    """A stored baseline for the chart, numbers in the stored unit rounded (catalogue decimals + 1)."""
    if b is None:
        return None
    keep = ("start_day", "end_day", "days_n", "source", "set_by")
    return {**{k: b.get(k) for k in keep},
            **{k: disp.stored(b.get(k)) for k in ("mean", "sd", "threshold", "band_low", "band_high")}}


def trends(store: Store, patient: str) -> dict:
    """Weekly trend of every watched series (:func:`watched_series`: the :data:`TREND_METRICS`, per side where the
    detector watches per side; the stored weekly summaries, weeks named by their Monday), the daily values, the
    stored baseline and its real-change threshold (none without a stored one) and the flagged spans until cleared
    (``flag_spans``; ``flag_days``: every day in them). Values rounded to the catalogue's decimals (+1)."""
    table = daily_table(store, patient)
    weekly = _with_trend_metrics(weekly_summaries(store, [patient]))
    weeks = [str(w) for w in weekly["week_start"]]
    stored = stored_flags.baselines(store, patient)
    flag_list = stored_flags.flags(store, patient)
    last_day = str(table["day"].max()) if len(table) else None
    metrics = []
    for m, series, side in watched_series(stored, flag_list):
        column = m.key if side is None else series
        disp = flag_text.display(series)
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float) if column in table else \
            np.full(len(table), np.nan)
        week_values = pd.to_numeric(weekly[column], errors="coerce") if column in weekly else [np.nan] * len(weeks)
        b = _baseline_out(stored.get(series), disp)
        spans = flag_spans(series, flag_list, last_day)
        metrics.append({
            "key": series, "metric": m.key, "side": side,
            "label": m.label if side is None else f"{m.label}, {flag_text.SIDE_WORDS[side].lower()}",
            "unit": m.unit, "decimals": m.decimals,
            "weekly": [{"week": w, "value": disp.stored(_clean(float(v))), "days_n": int(n)}
                       for w, v, n in zip(weeks, week_values, weekly["days_n"], strict=True)],
            "daily": [{"day": d, "value": disp.stored(float(v))} for d, v in zip(table["day"], values, strict=True)
                      if np.isfinite(v)],
            "baseline": b, "threshold": None if b is None else b["threshold"],
            "threshold_source": None if b is None or b["threshold"] is None else "baseline",
            "flag_spans": spans, "flag_days": sorted({d for sp in spans for d in _days(sp)}),
        })
    return {"patient": patient, "weeks": weeks, "metrics": metrics}


# the week ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientWeek:
    """The patient's seven days ending their today, counted in their time zone."""

    time_zone: str
    #: the patient's today (in their zone)
    today: date
    #: :func:`week_activity`: per day, steps and walking minutes
    days: list[dict]
    #: :func:`wearing_seconds`
    wearing_s: float


def patient_today(today: date, now_us: int, time_zone: str) -> date:
    """The patient's today: the app's ``today`` (its UTC day, injectable in tests) moved by the days the
    patient's zone is ahead of or behind UTC at ``now_us`` (-1, 0 or +1)."""
    return today + (today_in(time_zone, now_us) - today_in(None, now_us))


def patient_week(store: Store, patient: str, today: date, now_us: int) -> PatientWeek:
    """This week of the patient (one read of their time zone); ``today`` is the app's (UTC) today."""
    time_zone = patient_time_zone(store, patient)
    local = patient_today(today, now_us, time_zone)
    return PatientWeek(time_zone, local, week_activity(store, patient, local),
                       wearing_seconds(store, patient, local, now_us, time_zone=time_zone))


def wearing_seconds(store: Store, patient: str, today: date, now_us: int, *, time_zone: str | None = None) -> float:
    """Time the insoles recorded in the seven days ending ``today`` (days in ``time_zone``; session durations;
    an open one counts up to now)."""
    start, _ = week_window(today)
    spans = db.session_spans(store, patient, day_start_us(start, time_zone),
                             day_start_us(today + timedelta(days=1), time_zone))
    return sum(max(min(now_us if end is None else end, now_us) - begin, 0) for begin, end in spans) / 1e6


def week_activity(store: Store, patient: str, today: date) -> list[dict]:
    """Per day of the seven ending ``today`` (the patient's; days as stored, in their zone): steps (strides of
    both feet) and walking minutes."""
    start, _ = week_window(today)
    days = [(start + timedelta(days=i)).isoformat() for i in range(7)]
    steps = dict.fromkeys(days, 0)
    walking_s = dict.fromkeys(days, 0.0)
    for day, strides_n, summary in db.session_summaries(store, patient, days[0], days[-1]):
        steps[day] += strides_n
        walking_s[day] += float(summary.get("walking_time_s") or 0.0)
    return [{"day": d, "steps": steps[d], "walking_min": round(walking_s[d] / 60.0, 1)} for d in days]


# sessions ----------------------------------------------------------------------------------------
session_patient = db.session_patient
has_open_session = db.has_open_session


def sessions(store: Store, patient: str, *, limit: int = 50, offset: int = 0) -> list[dict]:
    """The patient's sessions, newest first, each with its day in the patient's time zone."""
    time_zone = patient_time_zone(store, patient)
    out = []
    for s in db.patient_sessions(store, patient, limit=limit, offset=offset):
        start, end = s["start_us"], s["end_us"]
        out.append({
            "session_id": s["session_id"], "day": day_of(start, time_zone), "start_us": start, "end_us": end,
            "duration_s": None if end is None else round((end - start) / 1e6, 1), "state": s["state"],
            "strides_n": s["strides_n"],
            "walking_time_s": _clean(s["summary"].get("walking_time_s")),
            "cadence_steps_per_min": _clean(s["summary"].get(C.CADENCE_STEPS_PER_MIN)),
        })
    return out


strides = session_strides


def session_detail(store: Store, session_id: str) -> dict:
    s = db.session(store, session_id)
    if s is None:
        raise LookupError(f"no session {session_id!r}")
    table = strides(store, session_id)
    cols = [c for c in STRIDE_TABLE_COLS if c in table]
    return {
        "session_id": session_id, "patient": s["patient"],
        "day": day_of(s["start_us"], patient_time_zone(store, s["patient"])),
        "start_us": s["start_us"], "end_us": s["end_us"], "state": s["state"], "close_reason": s["close_reason"],
        "summary": db.session_summary(store, session_id),
        "stride_columns": cols,
        "stride_column_info": [_column_info(c) for c in cols],
        "strides": [[_clean(v) for v in row] for row in table[cols].itertuples(index=False, name=None)],
    }


def _column_info(key: str) -> dict:
    """Label, unit and decimals of a stride table column: the catalogue's (:mod:`insole_common.metrics`)."""
    if key in _STRIDE_TABLE_OTHERS:
        label, unit, decimals = _STRIDE_TABLE_OTHERS[key]
    else:
        m = C.metric(key)
        label, unit, decimals = m.label, m.unit, m.decimals
    return {"key": key, "label": label, "unit": unit, "decimals": decimals}


# notes ---------------------------------------------------------------------------------------------
notes = db.notes
add_note = db.add_note


# the patient's own page, in plain words --------------------------------------------------------------
def plain_trend(store: Store, patient: str, today: date) -> list[str]:
    """A few sentences on how this week compares with the patient's usual walking; no jargon, no numbers. A change
    is spoken of only where an active flag backs it (:func:`storage.flags.active_flags`), in the catalogue's words
    for patients (``Metric.plain``; a metric without them is not mentioned)."""
    table = daily_table(store, patient)
    if table.empty:
        return ["We have not seen any walks yet. Once your insoles have recorded a few walks, you will see your trend here."]
    start, _ = week_window(today)
    if table[table["day"] >= start.isoformat()].empty:
        return ["No walks were recorded in the last seven days. Wear your insoles on your usual walks to see your trend."]
    sentences: dict[str, str] = {}
    for f in stored_flags.active_flags(store, [patient]):
        m = flag_text.metric_of(f["metric"])
        if m is None or m.plain is None or m.key in sentences:
            continue
        how = "" if m.compensation == C.EITHER or f.get("direction") not in ("up", "down") else \
            (": more than usual" if f["direction"] == "up" else ": less than usual")
        sentences[m.key] = f"We have noticed a change in {m.plain}{how}."
    if not sentences:
        return ["Your walking this week looks like your usual walking. Keep going!"]
    return [*sentences.values(), "Your therapist sees this change too and will talk it through with you."]


# researchers: de-identified ---------------------------------------------------------------------------
def cohorts(store: Store) -> list[str]:
    return db.cohorts(store)


def research_sessions(store: Store, *, cohort: str | None = None, from_day: str | None = None,
                      to_day: str | None = None) -> list[dict]:
    """Closed sessions with research labels only: no pseudonym, session id, device id, name or note.

    Days (in each patient's time zone) are shifted per subject (research.deid), and ``from_day`` / ``to_day``
    (inclusive) filter on those shifted days: a filter on real days would let a researcher recover them.
    """
    ensure_labels(store)
    for day in (from_day, to_day):
        if day:
            date.fromisoformat(day)  # ValueError for a bad day
    out = []
    for r in db.labelled_sessions(store, cohort=cohort):
        day = Subject(r["subject"], r["cohort"], r["date_shift_days"]).shift_day(day_of(r["start_us"], r["time_zone"]))
        if (from_day and day < from_day) or (to_day and day > to_day):
            continue
        out.append({
            "session": r["session"], "subject": r["subject"], "cohort": r["cohort"], "day": day,
            "duration_s": None if r["end_us"] is None else round((r["end_us"] - r["start_us"]) / 1e6, 1),
            "strides_n": r["strides_n"], "_start_us": r["start_us"]})
    out.sort(key=lambda row: (row["subject"], row.pop("_start_us"), row["session"]))
    return out


def research_session(store: Store, label: str) -> tuple[str, str, str, str] | None:
    """(session_id, subject label, cohort, shifted day) behind a research session label, or None."""
    ensure_subject_labels(store)
    r = db.labelled_session(store, label)
    if r is None:
        return None
    day = Subject(r["subject"], r["cohort"], r["date_shift_days"]).shift_day(day_of(r["start_us"], r["time_zone"]))
    return r["session_id"], r["subject"], r["cohort"], day
