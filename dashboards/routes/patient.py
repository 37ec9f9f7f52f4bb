"""The patient's own page and its API: are the insoles recording, battery, last walk, the week, and the trend in
plain words (only where an active flag backs it): :func:`dashboards.overview.me_overview`, one function for both."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from dashboards import overview
from dashboards.deps import Dashboard, dashboard, own_patient, render

router = APIRouter(tags=["patient"])


@router.get("/me", include_in_schema=False)
def me_page(request: Request, patient: str = Depends(own_patient), d: Dashboard = Depends(dashboard)):
    return render(request, "me.html", me=overview.me_overview(d.store, patient, d.today(), d.now_us(),
                                                              d.feed.status(patient)))


@router.get("/api/me/overview", openapi_extra={"x-access": "patient (own data only)"})
def api_me(patient: str = Depends(own_patient), d: Dashboard = Depends(dashboard)):
    """Are my insoles connected and recording, their batteries, my last walk, how much I walked this week, my
    trend in plain words."""
    return overview.me_overview(d.store, patient, d.today(), d.now_us(), d.feed.status(patient))
