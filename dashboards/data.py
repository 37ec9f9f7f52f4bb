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

from insole_common import metrics as C
from insole_common.calendar import day_of, day_start_us, today_in, week_window
from insole_common.metrics import STANCE_SYMMETRY_PCT, TREND_METRICS
from processing.analytics import symmetry_index
from research.deid import Subject, ensure_labels, ensure_subject_labels
from storage import dashboard as db, flags as stored_flags
from storage.accounts import therapist_patients
from storage.patients import patient_time_zone
from storage.store import Store
from storage.strides import session_strides
from storage.summaries import last_summary_day, weekly_summaries

#: the detector's series (:mod:`processing.detection`) behind a trend metric that is not its own series
SERIES_OF = {STANCE_SYMMETRY_PCT: f"si_{C.STANCE_TIME_S}"}

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


def _series(key: str) -> set[str]:
    """The names under which flags and baselines of the trend metric ``key`` are stored (the detector's series)."""
    return {key, f"{key}_L", f"{key}_R", SERIES_OF.get(key, key)}


def _label_unit(key: str) -> tuple[str, str]:
    """Label and unit of a metric or series key (also ``{key}_L`` / ``{key}_R``, ``si_...``) from the catalogue;
    unknown: (key, "")."""
    key = {series: metric for metric, series in SERIES_OF.items()}.get(key, key)
    try:
        m = C.metric(key)
    except KeyError:
        return key, ""
    return m.label, m.unit


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
    metrics it watches as one series (``stance_symmetry_pct``: ``si_stance_time_s``); per-side series are not a
    trend metric's baseline."""
    stored = stored_flags.baselines(store, patient)
    return {m.key: stored[SERIES_OF.get(m.key, m.key)] for m in TREND_METRICS if SERIES_OF.get(m.key, m.key) in stored}


def flags(store: Store, patient: str, *, since: str | None = None) -> list[dict]:
    """Every stored flag event of the patient, newest first, with the metric's label and unit."""
    out = []
    for f in stored_flags.flags(store, patient, since=since):
        label, unit = _label_unit(f["metric"])
        out.append({**f, "metric_label": label, "unit": unit})
    return out


def trends(store: Store, patient: str) -> dict:
    """Weekly trend of every :data:`TREND_METRICS` metric (the stored weekly summaries, weeks named by their
    Monday), the daily values, the stored baseline and its real-change threshold (none without a stored one)."""
    table = daily_table(store, patient)
    weekly = _with_trend_metrics(weekly_summaries(store, [patient]))
    weeks = [str(w) for w in weekly["week_start"]]
    base = baselines(store, patient)
    flag_list = flags(store, patient)
    metrics = []
    for m in TREND_METRICS:
        values = table[m.key].to_numpy(dtype=float)
        b = base.get(m.key)
        threshold = None if b is None else b.get("threshold")
        names = _series(m.key)
        metrics.append({
            "key": m.key, "label": m.label, "unit": m.unit, "decimals": m.decimals,
            "weekly": [{"week": w, "value": _clean(float(v)), "days_n": int(n)}
                       for w, v, n in zip(weeks, weekly[m.key], weekly["days_n"], strict=True)],
            "daily": [{"day": d, "value": _clean(float(v))} for d, v in zip(table["day"], values, strict=True) if np.isfinite(v)],
            "baseline": b, "threshold": _clean(threshold), "threshold_source": None if threshold is None else "baseline",
            "flag_days": sorted({f["day"] for f in flag_list if f["metric"] in names and f["state"] == "raised"}),
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


def patient_list(store: Store, therapist: str, today: date, now_us: int) -> list[dict]:
    """The therapist's patients with every active flag (raised and not cleared, however long ago), this week's
    wearing time and steps."""
    patients = therapist_patients(store, therapist)
    active: dict[str, list[dict]] = {}
    for f in stored_flags.active_flags(store, [p for p, _name in patients]):
        active.setdefault(f["patient"], []).append(f)
    out = []
    for patient, display_name in patients:
        open_flags = active.get(patient, [])
        week = patient_week(store, patient, today, now_us)
        out.append({
            "patient": patient, "display_name": display_name,
            "flags": [{"kind": f["kind"], "metric": f["metric"], "metric_label": _label_unit(f["metric"])[0],
                       "state": "raised", "day": f["day"], "since_day": f["since_day"], "effect_size": f["effect_size"]}
                      for f in open_flags],
            "raised_n": len(open_flags),
            "wearing_h": round(week.wearing_s / 3600.0, 2),
            "steps_week": sum(d["steps"] for d in week.days),
            "last_day": last_summary_day(store, patient),
        })
    # patients with raised flags first, then by name
    out.sort(key=lambda p: (-p["raised_n"], p["patient"]))
    return out


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
    """A few sentences on how this week compares with the patient's usual walking; no jargon, no numbers."""
    table = daily_table(store, patient)
    if table.empty:
        return ["We have not seen any walks yet. Once your insoles have recorded a few walks, you will see your trend here."]
    start, _ = week_window(today)
    this_week = table[table["day"] >= start.isoformat()]
    if this_week.empty:
        return ["No walks were recorded in the last seven days. Wear your insoles on your usual walks to see your trend."]
    base = baselines(store, patient)
    sentences = []
    changed = False
    for m in TREND_METRICS:
        if m.plain is None:
            continue
        now = float(this_week[m.key].median()) if this_week[m.key].notna().any() else math.nan
        b = base.get(m.key)
        if b is None or b.get("threshold") is None:  # no stored real-change threshold: nothing to say
            continue
        usual, threshold = float(b["mean"]), max(float(b["threshold"]), 1e-9)
        if not math.isfinite(now) or not math.isfinite(usual):
            continue
        if abs(now - usual) < threshold:
            continue
        changed = True
        if m.key == STANCE_SYMMETRY_PCT:
            better = abs(now) < abs(usual)
            sentences.append("You are sharing your weight more evenly between your feet than usual." if better else
                             "You are leaning on one foot more than usual.")
        elif m.key == C.STRIDE_LENGTH_M:
            sentences.append("Your steps are longer than usual." if now > usual else "Your steps are shorter than usual.")
        elif m.key == C.CADENCE_STEPS_PER_MIN:
            sentences.append("You are walking at a quicker pace than usual." if now > usual else
                             "You are walking at a slower pace than usual.")
        elif m.key == C.LATERAL_LOAD_FRACTION:
            sentences.append("You are putting more weight on the outside of your feet than usual." if now > usual else
                             "You are putting less weight on the outside of your feet than usual.")
        elif m.key == C.HEEL_LOAD_FRACTION:
            sentences.append("You are putting more weight on your heels than usual." if now > usual else
                             "You are putting less weight on your heels than usual.")
    if not changed:
        sentences.append("Your walking this week looks like your usual walking. Keep going!")
    else:
        sentences.append("Your therapist sees the same information and will talk it through with you.")
    return sentences


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
