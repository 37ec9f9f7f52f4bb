"""What the dashboards read from the processing service's storage, as plain dicts (the JSON API's bodies).

Everything here takes a :class:`storage.store.Store` and a pseudonym or session id
that the caller has already been allowed to see (access rules live in ``app.py``);
nothing here checks roles. Days are UTC calendar days ``YYYY-MM-DD`` as in the store;
weeks start on Monday. "This week" means the seven days ending today.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from insole_common import metrics as C
from research.deid import Subject, ensure_labels, ensure_subject_labels
from storage.store import Store
from storage.strides import session_strides

STANCE_SYMMETRY_PCT = "stance_symmetry_pct"


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    #: how to say it to a patient; None: not shown to patients
    plain: str | None = None
    decimals: int = 2


#: the weekly trend charts of the therapist's patient page, in order
TREND_METRICS: tuple[Metric, ...] = (
    Metric(C.CADENCE_STEPS_PER_MIN, "Cadence", "steps/min", "your walking pace", 1),
    Metric(C.STRIDE_LENGTH_M, "Stride length", "m", "the length of your steps", 2),
    Metric(C.STRIDE_TIME_S, "Stride time", "s", None, 3),
    Metric(STANCE_SYMMETRY_PCT, "Stance symmetry (L−R)", "%", "how evenly you share your weight between your feet", 1),
    Metric(C.LATERAL_LOAD_FRACTION, "Lateral load", "fraction", "how much weight goes to the outside of your feet", 3),
    Metric(C.COP_ML_MEAN_FW, "Medial-lateral COP", "foot widths", None, 3),
    Metric(C.HEEL_LOAD_FRACTION, "Heel load", "fraction", "how much weight you put on your heels", 3),
)
METRICS_BY_KEY = {m.key: m for m in TREND_METRICS}
#: real-change threshold shown when no flag carries the detector's own: this many baseline SDs
DEFAULT_THRESHOLD_SD = 1.96 * math.sqrt(2)

#: per-stride table columns shown in the session drill-down
STRIDE_TABLE_COLS = (C.SIDE, C.HEEL_STRIKE_S, C.STRIDE_TIME_S, C.STANCE_TIME_S, C.STANCE_PCT, C.CADENCE_STEPS_PER_MIN,
                     C.STRIDE_LENGTH_M, C.GAIT_SPEED_M_S, C.COP_ML_MEAN_FW, C.LATERAL_LOAD_FRACTION,
                     C.HEEL_LOAD_FRACTION, C.PEAK_HEEL_LOAD)


def utc_day(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, tz=timezone.utc).strftime("%Y-%m-%d")


def day_start_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1_000_000)


def _clean(x):
    """NaN/inf -> None, numpy -> Python, for JSON."""
    if isinstance(x, (np.generic,)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _week_of(day: str) -> str:
    d = date.fromisoformat(day)
    return (d - timedelta(days=d.weekday())).isoformat()


# daily and weekly metrics -----------------------------------------------------------------------
def daily_table(store: Store, patient: str, *, since: str | None = None) -> pd.DataFrame:
    """One row per day with data: ``day``, ``sessions_n``, ``strides_n`` and the daily medians."""
    sql = "SELECT day, sessions_n, strides_n, metrics_json FROM daily_summaries WHERE patient = ?"
    params: tuple = (patient,)
    if since is not None:
        sql += " AND day >= ?"
        params += (since,)
    rows = store.query(sql + " ORDER BY day", params)
    if rows.empty:
        return pd.DataFrame(columns=["day", "sessions_n", "strides_n"] + [m.key for m in TREND_METRICS])
    metrics = pd.DataFrame([json.loads(m) for m in rows["metrics_json"]], index=rows.index)
    table = pd.concat([rows[["day", "sessions_n", "strides_n"]], metrics], axis=1)
    left = pd.to_numeric(table.get(f"{C.STANCE_TIME_S}_L"), errors="coerce") if f"{C.STANCE_TIME_S}_L" in table else None
    right = pd.to_numeric(table.get(f"{C.STANCE_TIME_S}_R"), errors="coerce") if f"{C.STANCE_TIME_S}_R" in table else None
    if left is not None and right is not None:
        # symmetry index, signed: positive = longer stance on the left
        table[STANCE_SYMMETRY_PCT] = 100.0 * (left - right) / ((left + right) / 2.0)
    for m in TREND_METRICS:
        table[m.key] = pd.to_numeric(table[m.key], errors="coerce") if m.key in table else np.nan
    return table


def baselines(store: Store, patient: str) -> dict[str, dict]:
    rows = store.query("SELECT metric, start_day, end_day, mean, sd, days_n, source, set_by FROM baselines WHERE patient = ?",
                       (patient,))
    return {str(r["metric"]): {k: _clean(r[k]) for k in rows.columns if k != "metric"} for _, r in rows.iterrows()}


def flags(store: Store, patient: str, *, since: str | None = None) -> list[dict]:
    sql = ("SELECT id, kind, metric, state, day, baseline, current, threshold, effect_size, days_n, evidence_json, created_us "
           "FROM flags WHERE patient = ?")
    params: tuple = (patient,)
    if since is not None:
        sql += " AND day >= ?"
        params += (since,)
    rows = store.query(sql + " ORDER BY day DESC, id DESC", params)
    out = []
    for r in rows.to_dict("records"):
        evidence = json.loads(r.pop("evidence_json") or "{}")
        metric = METRICS_BY_KEY.get(r["metric"])
        out.append({**{k: _clean(v) for k, v in r.items()}, "evidence": evidence,
                    "metric_label": metric.label if metric else r["metric"], "unit": metric.unit if metric else ""})
    return out


def latest_thresholds(flag_list: list[dict]) -> dict[str, float]:
    """The real-change threshold per metric from the most recent flag that carries one."""
    out: dict[str, float] = {}
    for f in flag_list:  # newest first
        if f["metric"] not in out and f.get("threshold") is not None:
            out[f["metric"]] = float(f["threshold"])
    return out


def trends(store: Store, patient: str) -> dict:
    """Weekly trend of every :data:`TREND_METRICS` metric, with baseline band and real-change threshold."""
    table = daily_table(store, patient)
    base = baselines(store, patient)
    flag_list = flags(store, patient)
    thresholds = latest_thresholds(flag_list)
    weeks: list[str] = []
    if len(table):
        table["week"] = [_week_of(d) for d in table["day"]]
        weeks = sorted(table["week"].unique())
        grouped = table.groupby("week")
    metrics = []
    for m in TREND_METRICS:
        weekly, daily = [], []
        if len(table):
            med = grouped[m.key].median()
            n = grouped[m.key].count()
            weekly = [{"week": w, "value": _clean(float(med[w])) if n[w] else None, "days_n": int(n[w])} for w in weeks]
            values = table[m.key].to_numpy(dtype=float)
            daily = [{"day": d, "value": _clean(float(v))} for d, v in zip(table["day"], values) if np.isfinite(v)]
        b = base.get(m.key)
        if m.key in thresholds:
            threshold, source = thresholds[m.key], "flag"
        elif b is not None and b["sd"] is not None:
            threshold, source = DEFAULT_THRESHOLD_SD * float(b["sd"]), "default"
        else:
            threshold, source = None, None
        metrics.append({
            "key": m.key, "label": m.label, "unit": m.unit, "decimals": m.decimals,
            "weekly": weekly, "daily": daily, "baseline": b,
            "threshold": _clean(threshold), "threshold_source": source,
            "flag_days": sorted({f["day"] for f in flag_list if f["metric"] == m.key and f["state"] == "raised"}),
        })
    return {"patient": patient, "weeks": weeks, "metrics": metrics}


# the week ---------------------------------------------------------------------------------------
def week_window(today: date) -> tuple[date, date]:
    return today - timedelta(days=6), today


def wearing_seconds(store: Store, patient: str, today: date, now_us: int) -> float:
    """Time the insoles recorded in the seven days ending ``today`` (session durations; an open one counts up to now)."""
    start, _ = week_window(today)
    rows = store.query("SELECT start_us, end_us FROM sessions WHERE patient = ? AND start_us >= ? AND start_us < ?",
                       (patient, day_start_us(start), day_start_us(today + timedelta(days=1))))
    if rows.empty:
        return 0.0
    end = rows["end_us"].fillna(now_us).astype("int64").clip(upper=now_us)
    return float(((end - rows["start_us"].astype("int64")).clip(lower=0)).sum() / 1e6)


def week_activity(store: Store, patient: str, today: date) -> list[dict]:
    """Per day of the last seven: steps (strides of both feet) and walking minutes."""
    start, _ = week_window(today)
    days = [(start + timedelta(days=i)).isoformat() for i in range(7)]
    rows = store.query("SELECT day, strides_n, summary_json FROM session_summaries WHERE patient = ? AND day >= ? AND day <= ?",
                       (patient, days[0], days[-1]))
    steps = dict.fromkeys(days, 0)
    walking_s = dict.fromkeys(days, 0.0)
    for r in rows.itertuples():
        steps[r.day] += int(r.strides_n)
        walking_s[r.day] += float(json.loads(r.summary_json).get("walking_time_s") or 0.0)
    return [{"day": d, "steps": steps[d], "walking_min": round(walking_s[d] / 60.0, 1)} for d in days]


def patient_list(store: Store, therapist: str, today: date, now_us: int) -> list[dict]:
    """The therapist's patients with this week's flags and wearing time."""
    rows = store.query(
        "SELECT tp.patient, a.display_name FROM therapist_patients tp "
        "LEFT JOIN accounts a ON a.patient = tp.patient AND a.role = 'patient' WHERE tp.therapist = ? ORDER BY tp.patient",
        (therapist,))
    start, _ = week_window(today)
    out = []
    for r in rows.drop_duplicates("patient").itertuples():
        week_flags = flags(store, r.patient, since=start.isoformat())
        last = store.query("SELECT MAX(day) AS d FROM daily_summaries WHERE patient = ?", (r.patient,)).iloc[0]["d"]
        out.append({
            "patient": r.patient, "display_name": "" if pd.isna(r.display_name) else str(r.display_name),
            "flags": [{k: f[k] for k in ("kind", "metric", "metric_label", "state", "day", "effect_size")} for f in week_flags],
            "raised_n": sum(f["state"] == "raised" for f in week_flags),
            "wearing_h": round(wearing_seconds(store, r.patient, today, now_us) / 3600.0, 2),
            "steps_week": sum(d["steps"] for d in week_activity(store, r.patient, today)),
            "last_day": None if last is None or pd.isna(last) else str(last),
        })
    # patients with raised flags first, then by name
    out.sort(key=lambda p: (-p["raised_n"], p["patient"]))
    return out


# sessions ----------------------------------------------------------------------------------------
def session_patient(store: Store, session_id: str) -> str | None:
    rows = store.query("SELECT patient FROM sessions WHERE session_id = ?", (session_id,))
    return None if rows.empty else str(rows.iloc[0]["patient"])


def sessions(store: Store, patient: str, *, limit: int = 50, offset: int = 0) -> list[dict]:
    rows = store.query(
        "SELECT s.session_id, s.start_us, s.end_us, s.state, ss.strides_n, ss.summary_json FROM sessions s "
        "LEFT JOIN session_summaries ss ON ss.session_id = s.session_id WHERE s.patient = ? "
        "ORDER BY s.start_us DESC LIMIT ? OFFSET ?", (patient, int(limit), int(offset)))
    out = []
    for r in rows.itertuples():
        summary = json.loads(r.summary_json) if isinstance(r.summary_json, str) else {}
        end = None if r.end_us is None or pd.isna(r.end_us) else int(r.end_us)
        out.append({
            "session_id": r.session_id, "day": utc_day(int(r.start_us)), "start_us": int(r.start_us), "end_us": end,
            "duration_s": None if end is None else round((end - int(r.start_us)) / 1e6, 1), "state": r.state,
            "strides_n": None if r.strides_n is None or pd.isna(r.strides_n) else int(r.strides_n),
            "walking_time_s": _clean(summary.get("walking_time_s")),
            "cadence_steps_per_min": _clean(summary.get(C.CADENCE_STEPS_PER_MIN)),
        })
    return out


strides = session_strides


def session_detail(store: Store, session_id: str) -> dict:
    s = store.query("SELECT session_id, patient, start_us, end_us, state, close_reason, devices_json FROM sessions "
                    "WHERE session_id = ?", (session_id,)).iloc[0]
    summ = store.query("SELECT summary_json FROM session_summaries WHERE session_id = ?", (session_id,))
    summary = json.loads(summ.iloc[0]["summary_json"]) if len(summ) else {}
    table = strides(store, session_id)
    cols = [c for c in STRIDE_TABLE_COLS if c in table]
    end = None if s["end_us"] is None or pd.isna(s["end_us"]) else int(s["end_us"])
    return {
        "session_id": session_id, "patient": str(s["patient"]), "day": utc_day(int(s["start_us"])),
        "start_us": int(s["start_us"]), "end_us": end, "state": s["state"], "close_reason": s["close_reason"],
        "summary": summary,
        "stride_columns": cols,
        "strides": [[_clean(v) for v in row] for row in table[cols].itertuples(index=False, name=None)],
    }


# notes ---------------------------------------------------------------------------------------------
def notes(store: Store, patient: str) -> list[dict]:
    rows = store.query("SELECT id, author, time_us, text FROM notes WHERE patient = ? ORDER BY time_us DESC, id DESC",
                       (patient,))
    return [{k: _clean(v) for k, v in r.items()} for r in rows.to_dict("records")]


def add_note(store: Store, patient: str, author: str, text: str, now_us: int) -> None:
    store.execute("INSERT INTO notes (patient, author, time_us, text) VALUES (?, ?, ?, ?)", (patient, author, now_us, text))


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
    earlier = table[table["day"] < start.isoformat()]
    sentences = []
    changed = False
    for m in TREND_METRICS:
        if m.plain is None:
            continue
        now = float(this_week[m.key].median()) if this_week[m.key].notna().any() else math.nan
        b = base.get(m.key)
        if b is not None:
            usual, spread = float(b["mean"]), float(b["sd"] or 0.0)
        elif earlier[m.key].notna().sum() >= 3:
            usual, spread = float(earlier[m.key].median()), float(earlier[m.key].std())
        else:
            continue
        if not math.isfinite(now) or not math.isfinite(usual):
            continue
        threshold = max(DEFAULT_THRESHOLD_SD * spread, 1e-9)
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
    return sorted(store.query("SELECT DISTINCT cohort FROM research_subjects")["cohort"].astype(str))


def research_sessions(store: Store, *, cohort: str | None = None, from_day: str | None = None,
                      to_day: str | None = None) -> list[dict]:
    """Closed sessions with research labels only: no pseudonym, session id, device id, name or note.

    Days are shifted per subject (research.deid), and ``from_day`` / ``to_day`` (inclusive)
    filter on those shifted days: a filter on real days would let a researcher recover them.
    """
    ensure_labels(store)
    for day in (from_day, to_day):
        if day:
            date.fromisoformat(day)  # ValueError for a bad day
    sql = ("SELECT rs.label AS session, sub.label AS subject, sub.cohort, sub.date_shift_days, s.start_us, s.end_us, "
           "ss.strides_n FROM sessions s JOIN research_sessions rs ON rs.session_id = s.session_id "
           "JOIN research_subjects sub ON sub.patient = s.patient "
           "LEFT JOIN session_summaries ss ON ss.session_id = s.session_id WHERE s.state = 'closed'")
    params: tuple = ()
    if cohort:
        sql += " AND sub.cohort = ?"
        params += (cohort,)
    out = []
    for r in store.query(sql, params).itertuples():
        day = Subject(str(r.subject), str(r.cohort), int(r.date_shift_days)).shift_day(utc_day(int(r.start_us)))
        if (from_day and day < from_day) or (to_day and day > to_day):
            continue
        out.append({
            "session": r.session, "subject": r.subject, "cohort": r.cohort, "day": day,
            "duration_s": None if r.end_us is None or pd.isna(r.end_us) else round((int(r.end_us) - int(r.start_us)) / 1e6, 1),
            "strides_n": None if r.strides_n is None or pd.isna(r.strides_n) else int(r.strides_n),
            "_start_us": int(r.start_us)})
    out.sort(key=lambda row: (row["subject"], row.pop("_start_us"), row["session"]))
    return out


def research_session(store: Store, label: str) -> tuple[str, str, str, str] | None:
    """(session_id, subject label, cohort, shifted day) behind a research session label, or None."""
    ensure_subject_labels(store)
    rows = store.query(
        "SELECT s.session_id, sub.label AS subject, sub.cohort, sub.date_shift_days, s.start_us FROM research_sessions rs "
        "JOIN sessions s ON s.session_id = rs.session_id JOIN research_subjects sub ON sub.patient = s.patient "
        "WHERE rs.label = ?", (label,))
    if rows.empty:
        return None
    r = rows.iloc[0]
    day = Subject(str(r["subject"]), str(r["cohort"]), int(r["date_shift_days"])).shift_day(utc_day(int(r["start_us"])))
    return str(r["session_id"]), str(r["subject"]), str(r["cohort"]), day