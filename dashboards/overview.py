"""Who needs attention and why: the therapist's overview (one row per patient, most urgent first) and the facts
of the patient's own home page. The weekly digest (:mod:`dashboards.digest`) is made of the same rows.

**Urgency** (:func:`urgency_key`): patients with active flags first, the one whose furthest flag is furthest
beyond its real-change threshold (``|current − baseline| / threshold``) first; then the patients without, the
longest without a walk first (never recorded: before all of them); ties by pseudonym.

The collector's status comes from the live feed (:meth:`dashboards.live.LiveFeed.status`): ``status`` below is
its dict (``broker``, ``collector``, ``L``, ``R``). Recording now = an open session. Battery: the insole's last
reported ``battery_pct``, else unknown. The collector's fields are said in words with their units
(:data:`HUB_WORDS`, unknown ones left out; :func:`hub_status`), a full disk and dropped frames as warnings; a
field the collector adds later is shown as "its name: value" without a change here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from dashboards import data, flag_text
from insole_common.calendar import day_of
from storage import dashboard as db, flags as stored_flags
from storage.accounts import therapist_patients
from storage.store import Store

SIDES = {"L": "left", "R": "right"}
#: a battery below this is "low"
LOW_BATTERY_PCT = 20


def _count(n: int) -> str:
    """1234567 -> "1 234 567" (groups joined by no-break spaces, so a number never wraps; no locale)."""
    return f"{n:,}".replace(",", "\u00a0")


#: the collector's status fields in words with their units (``None``: nothing worth saying)
HUB_WORDS: dict[str, Callable[[Any], str | None]] = {
    "online": lambda v: "hub online" if v else "hub offline",
    "software": lambda v: f"software {v}",
    "outbox_batches_n": lambda v: f"{_count(v)} batch{'' if v == 1 else 'es'} waiting to be sent",
    "outbox_fill_fraction": lambda v: f"outbox {100 * v:.0f} % full",
    "storage_full": lambda v: "storage full: recording to memory" if v else "storage has room",
    "dropped_frames_n": lambda v: f"{_count(v)} frame{'' if v == 1 else 's'} dropped since it started" if v
    else "no frames dropped",
}
#: fields that are the message's own bookkeeping, not the hub's state
HUB_SKIP = ("received_s", "time_us")


def collector_fields(status: dict) -> list[dict]:
    """The collector's status fields, each ``{"key", "value", "text"}`` in words with units ("outbox 12 % full");
    unknown (None) fields are left out; a field the collector adds later is said as "its name: value"."""
    out = []
    for key, value in (status.get("collector") or {}).items():
        if key in HUB_SKIP or value is None:
            continue
        words = HUB_WORDS.get(key)
        shown = ("yes" if value else "no") if isinstance(value, bool) else value
        text = words(value) if words else f"{key.replace('_', ' ')}: {shown}"
        if text:
            out.append({"key": key, "value": value, "text": text})
    return out


def hub_status(status: dict) -> dict:
    """The home hub (collector) for the therapist: ``text`` ("hub online · software 1.4 · outbox 3 % full · ..."),
    ``warnings`` in words (storage full, frames dropped, offline), ``storage_full``, ``dropped_frames_n``."""
    collector = status.get("collector") or {}
    fields = collector_fields(status)
    warnings = []
    if collector and not collector.get("online"):
        warnings.append("Hub offline: nothing is recorded or sent until it is back.")
    if collector.get("storage_full"):
        warnings.append("Hub storage is full: recordings continue in memory, but space must be freed on the hub.")
    dropped = collector.get("dropped_frames_n")
    if dropped:
        warnings.append(f"{_count(dropped)} frame{'' if dropped == 1 else 's'} dropped by the hub since it started.")
    return {"text": " · ".join(f["text"] for f in fields) if fields else "hub status unknown", "fields": fields,
            "warnings": warnings, "online": collector.get("online"), "storage_full": collector.get("storage_full"),
            "dropped_frames_n": dropped}


def battery(status: dict) -> dict[str, dict]:
    """Per insole: ``pct`` (None: unknown), ``text`` ("81 %", "15 % (low)", "unknown"), ``connected``."""
    out = {}
    for side in SIDES:
        s = status.get(side) or {}
        pct = s.get("battery_pct")
        text = "unknown" if pct is None else f"{round(pct)} %" + (" (low)" if pct < LOW_BATTERY_PCT else "")
        out[side] = {"pct": None if pct is None else round(float(pct)), "text": text,
                     "connected": s.get("connected")}
    return out


def last_walk(store: Store, patient: str, time_zone: str, today: date) -> dict | None:
    """The latest walk: ``day`` (in the patient's zone), ``day_text``, ``days_ago``, ``walking_min``, ``strides_n``."""
    w = db.last_walk(store, patient)
    if w is None:
        return None
    day = day_of(w["start_us"], time_zone)
    return {"day": day, "day_text": flag_text.day_text(day), "days_ago": (today - date.fromisoformat(day)).days,
            "walking_min": None if w["walking_time_s"] is None else round(w["walking_time_s"] / 60, 1),
            "strides_n": w["strides_n"], "session_id": w["session_id"]}


def patient_row(store: Store, patient: str, display_name: str | None, flags: list[dict],
                acks: dict[tuple[str, str, str], list[dict]], status: dict, today: date, now_us: int) -> dict:
    """One patient of the overview (and of the digest): active flags as cards (most beyond threshold first),
    recording, battery, last walk, wearing time this week against the week before."""
    week = data.patient_week(store, patient, today, now_us)
    before = data.wearing_seconds(store, patient, week.today - timedelta(days=7), now_us, time_zone=week.time_zone)
    cards = [flag_text.card(f, acks.get((patient, f["metric"], f["since_day"]), [])) for f in flags]
    cards.sort(key=lambda c: -(c["change"]["beyond"] or 0.0))
    walk = last_walk(store, patient, week.time_zone, week.today)
    wearing_h, before_h = round(week.wearing_s / 3600, 2), round(before / 3600, 2)
    recording = data.has_open_session(store, patient)
    return {
        "patient": patient, "display_name": display_name, "today": week.today.isoformat(), "time_zone": week.time_zone,
        "flags": [{**c, "metric": c["series"], "state": "raised"} for c in cards], "raised_n": len(cards),
        "unacknowledged_n": sum(not c["acknowledged"] for c in cards),
        "beyond": max((c["change"]["beyond"] or 0.0 for c in cards), default=None),
        "recording": recording, "recording_text": "recording now" if recording else "not recording",
        "hub_online": (status.get("collector") or {}).get("online"), "collector": collector_fields(status),
        "hub": hub_status(status),
        "battery": battery(status), "last_walk": walk, "last_day": walk and walk["day"],
        "wearing_h": wearing_h, "wearing_h_last_week": before_h,
        "wearing_change_pct": None if before_h == 0 else round(100 * (wearing_h - before_h) / before_h),
        "steps_week": sum(d["steps"] for d in week.days), "week": week.days,
    }


def urgency_key(row: dict) -> tuple:
    """Sort key: active flags first, furthest beyond threshold first; then longest without a walk (module doc)."""
    if row["raised_n"]:
        return (0, -(row["beyond"] or 0.0), row["patient"])
    days_ago = row["last_walk"]["days_ago"] if row["last_walk"] else None
    return (1, 0 if days_ago is None else 1, -(days_ago or 0), row["patient"])


def urgency_reason(row: dict) -> str:
    """Why the patient is where they are in the list, in words."""
    if row["raised_n"]:
        n = row["raised_n"]
        return (f"{n} active flag{'s' if n > 1 else ''}; the furthest {row['beyond']:.1f}× its real-change threshold"
                if row["beyond"] is not None else f"{n} active flag{'s' if n > 1 else ''}")
    walk = row["last_walk"]
    if walk is None:
        return "no walk recorded yet"
    n = walk["days_ago"]
    return "walked today" if n <= 0 else f"last walk {n} day{'s' if n > 1 else ''} ago"


def overview(store: Store, therapist: str, today: date, now_us: int, status_of: Callable[[str], dict]) -> list[dict]:
    """The therapist's patients, most urgent first (:func:`urgency_key`), each a :func:`patient_row` with its
    ``urgency`` (rank from 1, reason)."""
    patients = therapist_patients(store, therapist)
    names = [p for p, _name in patients]
    active: dict[str, list[dict]] = {}
    for f in stored_flags.active_flags(store, names):
        active.setdefault(f["patient"], []).append(f)
    acks = stored_flags.acknowledgements(store, names)
    rows = [patient_row(store, p, name, active.get(p, []), acks, status_of(p), today, now_us) for p, name in patients]
    rows.sort(key=urgency_key)
    for i, row in enumerate(rows, start=1):
        row["urgency"] = {"rank": i, "reason": urgency_reason(row)}
    return rows


def one_patient(store: Store, patient: str, today: date, now_us: int, status: dict) -> dict:
    """:func:`patient_row` of one patient (their page, their digest), with the same flags and acknowledgements."""
    flags = stored_flags.active_flags(store, [patient])
    return patient_row(store, patient, None, flags, stored_flags.acknowledgements(store, [patient]), status, today,
                       now_us)


def acknowledge(store: Store, patient: str, series: str, author: str, note: str, now_us: int) -> dict:
    """Acknowledge the active flag of ``series`` (with an optional note); LookupError when none is active."""
    flag = next((f for f in stored_flags.active_flags(store, [patient]) if f["metric"] == series), None)
    if flag is None:
        raise LookupError(f"no active flag of {series!r}")
    stored_flags.acknowledge(store, patient, series, flag["since_day"], author, now_us, note)
    return flag


# the patient's own home page ----------------------------------------------------------------------------
def insole_status(status: dict, recording: bool) -> dict:
    """Collector and insole status in words a patient understands; ``recording`` (an open session) is said as
    the API reports it."""
    collector = status.get("collector") or {}
    online = bool(collector.get("online"))
    connected = {s: bool((status.get(s) or {}).get("connected")) for s in SIDES}
    if not status.get("broker") and not collector:
        headline, level = "We cannot check your insoles from here right now.", "unknown"
    elif not online:
        headline, level = "Your insole hub is offline. Check that it is plugged in and switched on.", "bad"
    elif not all(connected.values()):
        which = " and ".join(SIDES[s] for s, c in connected.items() if not c)
        headline, level = f"Your {which} insole is not connected. Check that it is switched on and close to the hub.", "bad"
    elif recording:
        headline, level = "Your insoles are recording now.", "good"
    else:
        headline, level = "Your insoles are ready but not recording right now. They record when you walk.", "good"
    hub_notes = []
    if collector.get("storage_full"):
        hub_notes.append("Home hub storage is full — recordings continue, but please free some space on the hub.")
    dropped = collector.get("dropped_frames_n")
    if dropped:
        hub_notes.append(f"Your hub could not keep {_count(dropped)} reading{'' if dropped == 1 else 's'} from your "
                         "insoles since it was switched on. If this keeps happening, please tell your therapist.")
    bat = battery(status)
    low = [SIDES[s] for s, b in bat.items() if b["pct"] is not None and b["pct"] < LOW_BATTERY_PCT]
    return {"headline": headline, "level": level, "hub_online": online, "connected": connected,
            "hub_notes": hub_notes, "recording": recording,
            "recording_text": "Recording now." if recording else "Not recording right now.",
            "battery_pct": {s: b["pct"] for s, b in bat.items()},
            "battery_text": {s: f"{SIDES[s].capitalize()} insole battery: {b['text']}" for s, b in bat.items()},
            "battery_note": f"The battery of your {' and '.join(low)} insole is low; please charge it." if low else None}


def me_overview(store: Store, patient: str, today: date, now_us: int, status: dict) -> dict:
    """Everything the patient's home page shows (its API body and its server-rendered facts)."""
    week = data.patient_week(store, patient, today, now_us)  # days in the patient's time zone
    walk = last_walk(store, patient, week.time_zone, week.today)
    minutes = None if walk is None or walk["walking_min"] is None else max(round(walk["walking_min"]), 1)
    return {"status": insole_status(status, data.has_open_session(store, patient)), "week": week.days,
            "steps": sum(day["steps"] for day in week.days),
            "walking_min": round(sum(day["walking_min"] for day in week.days), 1),
            "worn_h": round(week.wearing_s / 3600, 1), "last_walk": walk,
            "last_walk_text": "No walk recorded yet." if walk is None else
            f"Your last walk: {walk['day_text']}" + ("." if minutes is None else
                                                      f", about {minutes} minute{'s' if minutes > 1 else ''} of walking."),
            "trend": data.plain_trend(store, patient, week.today)}
