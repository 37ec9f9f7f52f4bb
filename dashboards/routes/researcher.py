"""The researcher's page and API: de-identified sessions (research labels, shifted days), their strides as
CSV and whole exports as ``kinetic export`` writes them; never a pseudonym, session id, device id, name or note."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask
from starlette.responses import FileResponse

from dashboards import data
from dashboards.auth import Actor
from dashboards.deps import BadRequest, Dashboard, NotFound, dashboard, render, researcher
from research.deid import ensure_subject_labels
from research.export import ExportError, labelled_strides, select_sessions, software_version, write_export
from research.formats import table_text

router = APIRouter(tags=["researcher"])
R = {"x-access": "researcher (de-identified data only)"}
DAY = r"^\d{4}-\d{2}-\d{2}$"


@router.get("/research", include_in_schema=False)
def research_page(request: Request, actor: Actor = Depends(researcher)):
    return render(request, "research.html")


@router.get("/api/research/cohorts", openapi_extra=R)
def api_cohorts(actor: Actor = Depends(researcher), d: Dashboard = Depends(dashboard)):
    """Cohort names."""
    ensure_subject_labels(d.store)
    return {"cohorts": data.cohorts(d.store)}


@router.get("/api/research/sessions", openapi_extra=R)
def api_research_sessions(actor: Actor = Depends(researcher), cohort: str | None = None,
                          from_day: str | None = Query(None, pattern=DAY), to_day: str | None = Query(None, pattern=DAY),
                          d: Dashboard = Depends(dashboard)):
    """Closed sessions by research label, filtered by cohort and by day (inclusive, UTC)."""
    try:
        rows = data.research_sessions(d.store, cohort=cohort or None, from_day=from_day, to_day=to_day)
    except ValueError as exc:
        raise BadRequest(f"bad day: {exc}") from exc
    return {"sessions": rows}


def _research_label(d: Dashboard, label: str) -> tuple:
    found = data.research_session(d.store, label)
    if found is None:
        raise NotFound(f"no session {label!r}")
    return found


@router.get("/api/research/sessions/{label}/strides.csv", openapi_extra=R, response_class=Response,
         responses={200: {"content": {"text/csv": {}}}})
def api_research_csv(label: str, actor: Actor = Depends(researcher), d: Dashboard = Depends(dashboard)):
    """Per-stride table of one session, de-identified, as CSV (the columns of ``kinetic export``'s strides table)."""
    session_id, subject, _cohort, _day = _research_label(d, label)
    body = table_text(labelled_strides(data.strides(d.store, session_id), subject, label))
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{label}_strides.csv"'})


@router.get("/api/research/sessions/{label}/export.zip", openapi_extra=R, response_class=Response,
         responses={200: {"content": {"application/zip": {}}}})
def api_research_export(label: str, actor: Actor = Depends(researcher),
                        format: str = Query("parquet", pattern="^(parquet|csv|bids)$"),
                        d: Dashboard = Depends(dashboard)):
    """One session exported exactly as ``kinetic export --format FORMAT`` writes it (raw samples from the
    archive, strides, events, manifest), de-identified, as a zip file."""
    session_id, _subject, _cohort, _day = _research_label(d, label)
    if d.archive is None:
        raise NotFound("this dashboard has no raw archive configured (kinetic dashboard --archive)")
    tmp = Path(tempfile.mkdtemp(prefix="kinetic-export-"))
    try:
        chosen = select_sessions(d.store, d.archive, session=session_id)
        out = write_export(chosen, tmp / label, format, software=software_version(), progress=False).out
        zip_path = tmp / f"{label}_{format}.zip"
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    zf.write(path, f"{label}/{path.relative_to(out)}")
    except ExportError as exc:  # refused (e.g. BIDS-Motion of a session without samples): say why
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadRequest(str(exc)) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(zip_path, media_type="application/zip", filename=zip_path.name,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
