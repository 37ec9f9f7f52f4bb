"""The therapist's live view: page, one frame, and a stream of frames (server-sent events)."""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from dashboards.deps import Dashboard, dashboard, render, therapist_patient

#: live view refresh, frames per second
LIVE_FPS = 5.0
LIVE_MAX_S = 3600.0

router = APIRouter(tags=["therapist"])
T = {"x-access": "therapist (assigned patients only)"}


@router.get("/therapist/live/{patient}", include_in_schema=False)
def therapist_live_page(request: Request, patient: str = Depends(therapist_patient)):
    return render(request, "live.html", patient=patient, fps=LIVE_FPS)


@router.get("/api/patients/{patient}/live", openapi_extra=T)
def api_live_snapshot(patient: str = Depends(therapist_patient), d: Dashboard = Depends(dashboard)):
    """One live frame per foot (latest pressure, COP trail) as last heard; see ``/live/stream`` for updates."""
    return d.feed.snapshot(patient)


@router.get("/api/patients/{patient}/live/stream", openapi_extra=T, response_class=StreamingResponse)
async def api_live_stream(request: Request, patient: str = Depends(therapist_patient),
                          d: Dashboard = Depends(dashboard)):
    """Server-sent events: a ``frame`` event (same body as ``/live``) ``LIVE_FPS`` times a second."""
    feed = d.feed

    async def events():
        started = time.monotonic()
        with feed.watch(patient):
            yield "retry: 2000\n\n"
            while time.monotonic() - started < LIVE_MAX_S:
                if await request.is_disconnected():
                    break
                body = dict(feed.snapshot(patient), status=feed.status(patient))
                yield f"event: frame\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"
                await asyncio.sleep(1.0 / LIVE_FPS)
    return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})
