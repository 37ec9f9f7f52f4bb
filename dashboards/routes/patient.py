"""The patient's own page and its API: are the insoles recording, the week, the trend in plain words."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from dashboards import data
from dashboards.deps import Dashboard, dashboard, own_patient, render

router = APIRouter(tags=["patient"])


@router.get("/me", include_in_schema=False)
def me_page(request: Request, patient: str = Depends(own_patient)):
    return render(request, "me.html")


@router.get("/api/me/overview", openapi_extra={"x-access": "patient (own data only)"})
def api_me(patient: str = Depends(own_patient), d: Dashboard = Depends(dashboard)):
    """Are my insoles connected and recording, how much did I walk this week, my trend in plain words."""
    status = d.feed.status(patient)
    week = data.patient_week(d.store, patient, d.today(), d.now_us())  # days in the patient's time zone
    return {"status": plain_status(status, data.has_open_session(d.store, patient)), "week": week.days,
            "steps": sum(day["steps"] for day in week.days),
            "walking_min": round(sum(day["walking_min"] for day in week.days), 1),
            "worn_h": round(week.wearing_s / 3600, 1), "trend": data.plain_trend(d.store, patient, week.today)}


def plain_status(status: dict, open_session: bool) -> dict:
    """Collector and insole status in words a patient understands."""
    collector = status.get("collector") or {}
    sides = {s: (status.get(s) or {}) for s in ("L", "R")}
    online = bool(collector.get("online"))
    connected = {s: bool(v.get("connected")) for s, v in sides.items()}
    battery = {s: v.get("battery_pct") for s, v in sides.items()}
    if not status.get("broker") and not collector:
        headline, level = "We cannot check your insoles from here right now.", "unknown"
    elif not online:
        headline, level = "Your insole hub is offline. Check that it is plugged in and switched on.", "bad"
    elif not all(connected.values()):
        which = " and ".join({"L": "left", "R": "right"}[s] for s, c in connected.items() if not c)
        headline, level = f"Your {which} insole is not connected. Check that it is switched on and close to the hub.", "bad"
    elif open_session:
        headline, level = "Your insoles are connected and recording.", "good"
    else:
        headline, level = "Your insoles are connected. They will record when you walk.", "good"
    low = [{"L": "left", "R": "right"}[s] for s, b in battery.items() if b is not None and b < 20]
    return {"headline": headline, "level": level, "hub_online": online, "connected": connected,
            "recording": open_session, "battery_pct": battery,
            "battery_note": f"The battery of your {' and '.join(low)} insole is low; please charge it." if low else None}
