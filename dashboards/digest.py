"""The weekly digest: what changed this week, per patient and for a therapist's whole list, as a printable page
(the browser's "save as PDF"). Its numbers are those of the pages, made by the same functions: the patient's
row of the overview (:func:`dashboards.overview.patient_row`: active flags, wearing time this week against the
week before, last walk), the weekly medians of the trend charts (:func:`dashboards.data.trends`) and the stored
flag events (:func:`dashboards.data.flags`).

"This week" is the seven days ending the patient's today, as everywhere; a series' change is its latest ISO
week's median (the chart's last point) against the week before and against the stored baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from dashboards import data, flag_text, overview
from insole_common.calendar import day_start_us
from storage.store import Store


def series_changes(trend: dict) -> list[dict]:
    """Per watched series (:func:`dashboards.data.trends`): the latest week's median, the week before, the stored
    baseline and whether the latest is beyond the real-change threshold; as numbers and as text."""
    out = []
    for m in trend["metrics"]:
        weeks = [w for w in m["weekly"] if w["value"] is not None]
        if not weeks:
            continue
        last, before = weeks[-1], (weeks[-2] if len(weeks) > 1 else None)
        b = m["baseline"]
        d = flag_text.display(m["key"])
        mean = None if b is None else b["mean"]
        c = flag_text.change(m["key"], mean, last["value"], m["threshold"])
        out.append({
            "series": m["key"], "label": m["label"], "week": last["week"], "week_text": flag_text.day_text(last["week"]),
            "value": last["value"], "value_text": d.text(last["value"]),
            "week_before": None if before is None else before["value"],
            "week_before_text": "–" if before is None else d.text(before["value"]),
            "baseline": mean, "baseline_text": d.text(mean), "threshold_text": d.text(m["threshold"]),
            "change_text": "no baseline" if mean is None else flag_text.change_text(m["key"], c),
            "beyond_threshold": c.beyond is not None and c.beyond > 1.0,
        })
    return out


def patient_digest(store: Store, row: dict, today: date) -> dict:
    """One patient's digest from their overview ``row`` (:func:`dashboards.overview.patient_row`)."""
    patient = row["patient"]
    local = date.fromisoformat(row["today"])
    first = (local - timedelta(days=6)).isoformat()
    events = [f for f in data.flags(store, patient, since=first) if f["day"] <= row["today"]]
    before = data.week_activity(store, patient, local - timedelta(days=7))
    since_us = day_start_us(date.fromisoformat(first), row["time_zone"])
    notes = [n for n in data.notes(store, patient) if n["time_us"] >= since_us]
    return {
        "patient": patient, "display_name": row["display_name"], "week_from": first, "week_to": row["today"],
        "week_text": f"{flag_text.day_text(first)} – {flag_text.day_text(row['today'])}",
        "row": row,
        "steps_week": row["steps_week"], "steps_last_week": sum(d["steps"] for d in before),
        "wearing_h": row["wearing_h"], "wearing_h_last_week": row["wearing_h_last_week"],
        "events": [{"day": f["day"], "day_text": f["day_text"], "words": f["words"], "sentence": f["sentence"],
                    "state": f["state"], "series": f["metric"]} for f in events],
        "series": series_changes(data.trends(store, patient)),
        "notes": notes,
    }


def digest_for(store: Store, patient: str, today: date, now_us: int, status: dict) -> dict:
    """The digest of one patient."""
    return patient_digest(store, overview.one_patient(store, patient, today, now_us, status), today)


def therapist_digest(store: Store, therapist: str, today: date, now_us: int,
                     status_of: Callable[[str], dict]) -> dict:
    """The digest of the therapist's whole list, most urgent first (the overview's order and rows)."""
    rows = overview.overview(store, therapist, today, now_us, status_of)
    return {"today": today.isoformat(), "today_text": flag_text.day_text(today.isoformat()),
            "patients": [patient_digest(store, row, today) for row in rows]}
