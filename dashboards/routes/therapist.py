"""The therapist's pages and API: their patients (most urgent first), trends, flags (cards, acknowledgement),
the weekly digest, notes, sessions and pressure maps (assigned patients only:
:func:`dashboards.deps.therapist_patient`, :func:`dashboards.deps.therapist_session`)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from dashboards import data, digest, overview
from dashboards.auth import Actor
from dashboards.deps import Dashboard, NotFound, check_csrf, dashboard, render, therapist, therapist_patient, therapist_session
from dashboards.plots import session_pressure
from storage.dashboard import session as stored_session

router = APIRouter(tags=["therapist"])
T = {"x-access": "therapist (assigned patients only)"}


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=5000)


class AckIn(BaseModel):
    text: str = Field(default="", max_length=5000)


# pages ------------------------------------------------------------------------------------------------
@router.get("/therapist", include_in_schema=False)
def therapist_home(request: Request, actor: Actor = Depends(therapist), d: Dashboard = Depends(dashboard)):
    rows = overview.overview(d.store, actor.username, d.today(), d.now_us(), d.feed.status)
    return render(request, "therapist_list.html", rows=rows, today=d.today().isoformat())


@router.get("/therapist/patients/{patient}", include_in_schema=False)
def therapist_patient_page(request: Request, patient: str = Depends(therapist_patient),
                           d: Dashboard = Depends(dashboard)):
    row = overview.one_patient(d.store, patient, d.today(), d.now_us(), d.feed.status(patient))
    return render(request, "therapist_patient.html", patient=patient, row=row, events=data.flags(d.store, patient))


@router.post("/therapist/patients/{patient}/notes", include_in_schema=False)
def therapist_note_form(request: Request, text: str = Form(min_length=1, max_length=5000), csrf_token: str = Form(""),
                        patient: str = Depends(therapist_patient), actor: Actor = Depends(therapist),
                        d: Dashboard = Depends(dashboard)):
    check_csrf(request, csrf_token)
    data.add_note(d.store, patient, actor.username, text.strip(), d.now_us())
    return RedirectResponse(f"/therapist/patients/{quote(patient)}#notes", status_code=303)


@router.post("/therapist/patients/{patient}/flags/{series}/acknowledge", include_in_schema=False)
def therapist_acknowledge_form(request: Request, series: str, text: str = Form("", max_length=5000),
                               csrf_token: str = Form(""), patient: str = Depends(therapist_patient),
                               actor: Actor = Depends(therapist), d: Dashboard = Depends(dashboard)):
    check_csrf(request, csrf_token)
    _acknowledge(d, patient, series, actor.username, text)
    return RedirectResponse(f"/therapist/patients/{quote(patient)}#flag-{quote(series)}", status_code=303)


@router.get("/therapist/digest", include_in_schema=False)
def therapist_digest_page(request: Request, actor: Actor = Depends(therapist), d: Dashboard = Depends(dashboard)):
    return render(request, "digest.html", digest=digest.therapist_digest(d.store, actor.username, d.today(), d.now_us(),
                                                                       d.feed.status))


@router.get("/therapist/patients/{patient}/digest", include_in_schema=False)
def patient_digest_page(request: Request, patient: str = Depends(therapist_patient), d: Dashboard = Depends(dashboard)):
    one = digest.digest_for(d.store, patient, d.today(), d.now_us(), d.feed.status(patient))
    return render(request, "digest.html", digest={"today": d.today().isoformat(), "patients": [one]}, patient=patient)


def _acknowledge(d: Dashboard, patient: str, series: str, author: str, text: str) -> None:
    try:
        overview.acknowledge(d.store, patient, series, author, text.strip(), d.now_us())
    except LookupError as exc:
        raise NotFound(str(exc)) from None


@router.get("/therapist/sessions/{session_id}", include_in_schema=False)
def therapist_session_page(request: Request, session_id: str = Depends(therapist_session),
                           d: Dashboard = Depends(dashboard)):
    return render(request, "therapist_session.html", session_id=session_id,
                  patient=data.session_patient(d.store, session_id))


# API --------------------------------------------------------------------------------------------------
@router.get("/api/therapist/patients", openapi_extra=T)
def api_patients(actor: Actor = Depends(therapist), d: Dashboard = Depends(dashboard)):
    """The therapist's patients, most urgent first (active flags furthest beyond their real-change threshold, then
    longest without a walk): active flags as cards in words, recording, battery, last walk, wearing time this week
    against the week before."""
    return {"today": d.today().isoformat(),
            "patients": overview.overview(d.store, actor.username, d.today(), d.now_us(), d.feed.status)}


@router.get("/api/therapist/digest", openapi_extra=T)
def api_digest(actor: Actor = Depends(therapist), d: Dashboard = Depends(dashboard)):
    """The weekly digest of all the therapist's patients (what changed this week; the numbers of the pages)."""
    return digest.therapist_digest(d.store, actor.username, d.today(), d.now_us(), d.feed.status)


@router.get("/api/patients/{patient}/digest", openapi_extra=T)
def api_patient_digest(patient: str = Depends(therapist_patient), d: Dashboard = Depends(dashboard)):
    """The weekly digest of one patient."""
    return digest.digest_for(d.store, patient, d.today(), d.now_us(), d.feed.status(patient))


@router.get("/api/patients/{patient}", openapi_extra=T)
def api_patient(patient: str = Depends(therapist_patient), d: Dashboard = Depends(dashboard)):
    """Header facts of one patient: this week's wearing time, steps, collector status."""
    week = data.patient_week(d.store, patient, d.today(), d.now_us())  # days in the patient's time zone
    return {"patient": patient, "today": week.today.isoformat(), "time_zone": week.time_zone,
            "wearing_h": round(week.wearing_s / 3600, 2), "week": week.days, "status": d.feed.status(patient)}


@router.get("/api/patients/{patient}/trends", openapi_extra=T)
def api_trends(patient: str = Depends(therapist_patient), d: Dashboard = Depends(dashboard)):
    """Weekly medians of the trend metrics (stored weekly summaries) with the stored baseline (mean ± SD) and its
    real-change threshold (none where no baseline is stored)."""
    return data.trends(d.store, patient)


@router.get("/api/patients/{patient}/flags", openapi_extra=T)
def api_flags(patient: str = Depends(therapist_patient), d: Dashboard = Depends(dashboard)):
    """Every flag event, newest first, in words with its evidence (``flags``), and the active flags as cards
    (``active``, most beyond threshold first, with acknowledgements)."""
    row = overview.one_patient(d.store, patient, d.today(), d.now_us(), d.feed.status(patient))
    return {"patient": patient, "flags": data.flags(d.store, patient), "active": row["flags"]}


@router.post("/api/patients/{patient}/flags/{series}/acknowledge",
             openapi_extra={"x-access": T["x-access"] + "; header X-CSRF-Token"}, status_code=201)
def api_acknowledge(request: Request, series: str, note: AckIn, patient: str = Depends(therapist_patient),
                    actor: Actor = Depends(therapist), d: Dashboard = Depends(dashboard)):
    """Acknowledge the active flag of ``series`` (e.g. ``lateral_load_fraction_L``) with an optional note (send the
    page's CSRF token in ``X-CSRF-Token``); 404 when that series has no active flag."""
    check_csrf(request, request.headers.get("x-csrf-token"))
    _acknowledge(d, patient, series, actor.username, note.text)
    row = overview.one_patient(d.store, patient, d.today(), d.now_us(), d.feed.status(patient))
    return {"patient": patient, "active": row["flags"]}


@router.get("/api/patients/{patient}/notes", openapi_extra=T)
def api_notes(patient: str = Depends(therapist_patient), d: Dashboard = Depends(dashboard)):
    """Therapist notes, newest first."""
    return {"patient": patient, "notes": data.notes(d.store, patient)}


@router.post("/api/patients/{patient}/notes", openapi_extra={"x-access": T["x-access"] + "; header X-CSRF-Token"},
          status_code=201)
def api_add_note(request: Request, note: NoteIn, patient: str = Depends(therapist_patient),
                 actor: Actor = Depends(therapist), d: Dashboard = Depends(dashboard)):
    """Add a note (send the page's CSRF token in ``X-CSRF-Token``)."""
    check_csrf(request, request.headers.get("x-csrf-token"))
    data.add_note(d.store, patient, actor.username, note.text.strip(), d.now_us())
    return {"patient": patient, "notes": data.notes(d.store, patient)}


@router.get("/api/patients/{patient}/sessions", openapi_extra=T)
def api_sessions(patient: str = Depends(therapist_patient), limit: int = Query(20, ge=1, le=500),
                 offset: int = Query(0, ge=0), d: Dashboard = Depends(dashboard)):
    """The patient's sessions, newest first."""
    return {"patient": patient, "sessions": data.sessions(d.store, patient, limit=limit, offset=offset)}


@router.get("/api/sessions/{session_id}", openapi_extra=T)
def api_session(session_id: str = Depends(therapist_session), d: Dashboard = Depends(dashboard)):
    """Session summary and the per-stride table."""
    return data.session_detail(d.store, session_id)


@router.get("/api/sessions/{session_id}/pressure", openapi_extra=T)
def api_session_pressure(session_id: str = Depends(therapist_session), d: Dashboard = Depends(dashboard)):
    """Pressure map of both feet (mean pressure while loaded, on the insole grid) and COP gait lines."""
    cache = d.pressure_cache
    if session_id in cache:
        cache.move_to_end(session_id)
        return cache[session_id]
    row = stored_session(d.store, session_id)
    if row is None:  # therapist_session found it; it went away since
        raise NotFound(f"no session {session_id!r}")
    result = session_pressure(list(d.store.session_batches(session_id)), data.strides(d.store, session_id),
                              row["start_us"])
    result["session_id"] = session_id
    if row["state"] == "closed":  # a closed session never changes
        cache[session_id] = result
        while len(cache) > d.session_cache_n:
            cache.popitem(last=False)
    return result
