"""The dashboards web app (FastAPI + Jinja2 pages + a JSON API under ``/api``).

Who may call what is decided here and only here, by the dependencies :func:`_need`,
:func:`_therapist_patient`, :func:`_therapist_session` and :func:`_own_patient`:

=============  =================================================================================
therapist      their assigned patients (``therapist_patients``): list, trends, flags, notes,
               sessions, pressure maps, live view; anything else is "not found"
patient        ``/me`` and ``/api/me/*`` only: their own status, week and trend in plain words
researcher     ``/research`` and ``/api/research/*``: research labels, cohorts, days and metrics;
               never a pseudonym, session id, device id, name or note
admin          ``/admin`` and ``/api/admin/accounts``: accounts and assignments, no gait data
=============  =================================================================================

Not signed in: pages redirect to ``/login``; the API answers 401. Wrong role: 403.
Every API route carries its rule as ``x-access`` in the OpenAPI document, and
``tests/test_dashboard_roles.py`` enumerates every route for every role.

Pages are thin: a server-rendered shell whose script (``static/pages.js``) reads the
JSON API and draws with ``static/charts.js`` (hand-written SVG, no library, no CDN).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.middleware.sessions import SessionMiddleware

from dashboards import data
from dashboards.auth import Actor, authenticate, load_actor
from dashboards.live import LiveFeed
from research.deid import ensure_subject_labels
from dashboards.signin_limit import SigninLimiter, client_network
from storage.store import Store

HERE = Path(__file__).parent
SESSION_COOKIE = "kc_session"
SESSION_MAX_AGE_S = 8 * 3600
MIN_SECRET_CHARS = 32
#: where each role lands after signing in
HOME = {"therapist": "/therapist", "patient": "/me", "researcher": "/research", "admin": "/admin"}
#: live view refresh, frames per second
LIVE_FPS = 5.0
LIVE_MAX_S = 3600.0


class NotSignedIn(Exception):
    pass


class Forbidden(Exception):
    pass


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=5000)


def create_app(store: Store, *, secret: str, feed: LiveFeed | None = None,
               today: Callable[[], date] | None = None, now_us: Callable[[], int] | None = None,
               https_only: bool = False, session_cache_n: int = 16, archive=None) -> FastAPI:
    """The app over ``store``. ``secret`` signs the session cookies (KINETIC_DASHBOARD_SECRET).
    ``archive`` (a :class:`storage.archive.RawArchive`) is where researcher downloads read raw samples.

    ``feed`` supplies collector status and live frames (a bare :class:`LiveFeed` knows
    nothing: status "unknown"); ``today``/``now_us`` are the clock (injectable for tests).
    """
    if not secret or len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"the session secret must have at least {MIN_SECRET_CHARS} characters (KINETIC_DASHBOARD_SECRET)")
    store.migrate()
    feed = feed if feed is not None else LiveFeed()
    now_us = now_us or (lambda: time.time_ns() // 1000)
    today = today or (lambda: datetime.fromtimestamp(now_us() / 1e6, tz=timezone.utc).date())

    app = FastAPI(
        title="Kinetic Chain dashboards API",
        version="1",
        description="JSON behind the therapist, patient and researcher pages. Sign in at /login first; "
        "the session cookie authorises these calls. `x-access` on each operation says who may call it.",
        docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
    )
    app.state.store, app.state.feed = store, feed
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    pressure_cache: OrderedDict[str, dict] = OrderedDict()

    # who is asking ------------------------------------------------------------------------------
    def actor_of(request: Request) -> Actor | None:
        username = request.session.get("u")
        return load_actor(store, username) if isinstance(username, str) else None

    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = request.session["csrf"] = secrets.token_urlsafe(32)
        return token

    def check_csrf(request: Request, supplied: str | None) -> None:
        expected = request.session.get("csrf")
        if not (isinstance(expected, str) and isinstance(supplied, str) and secrets.compare_digest(expected, supplied)):
            raise Forbidden("missing or wrong CSRF token; reload the page and try again")

    def _need(*roles: str):
        def dep(request: Request) -> Actor:
            actor = actor_of(request)
            if actor is None:
                raise NotSignedIn()
            if roles and actor.role not in roles:
                raise Forbidden(f"this needs a {' or '.join(roles)} account")
            return actor
        return dep

    signed_in = _need()
    therapist = _need("therapist")
    patient_role = _need("patient")
    researcher = _need("researcher")
    admin = _need("admin")

    def _assigned(actor: Actor, patient: str) -> bool:
        return not store.query("SELECT 1 AS x FROM therapist_patients WHERE therapist = ? AND patient = ?",
                               (actor.username, patient)).empty

    def _therapist_patient(patient: str, actor: Actor = Depends(therapist)) -> str:
        if not _assigned(actor, patient):
            raise NotFound(f"no patient {patient!r} among yours")
        return patient

    def _therapist_session(session_id: str, actor: Actor = Depends(therapist)) -> str:
        owner = data.session_patient(store, session_id)
        if owner is None or not _assigned(actor, owner):
            raise NotFound(f"no session {session_id!r} among your patients'")
        return session_id

    def _own_patient(actor: Actor = Depends(patient_role)) -> str:
        if not actor.patient:
            raise NotFound("this account is not linked to a patient")
        return actor.patient

    # errors -------------------------------------------------------------------------------------
    def _error(request: Request, status: int, message: str):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=status)
        return templates.TemplateResponse(request, "error.html", _ctx(request, status=status, message=message),
                                          status_code=status)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, _exc):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc):
        return _error(request, 403, str(exc) or "not allowed")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc):
        return _error(request, 404, str(exc) or "not found")

    @app.exception_handler(BadRequest)
    async def _bad_request(request: Request, exc):
        return _error(request, 400, str(exc))

    @app.middleware("http")
    async def _security_headers(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        # server time, for the benchmark and the browser's network panel
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
                                    "base-uri 'none'; form-action 'self'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # the session middleware wraps everything above (added last = outermost)
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE_S,
                       same_site="lax", https_only=https_only)

    def _ctx(request: Request, **extra) -> dict:
        return {"actor": actor_of(request), "csrf": csrf_token(request), **extra}

    def page(request: Request, name: str, **extra):
        return templates.TemplateResponse(request, name, _ctx(request, **extra))

    # public ---------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index(request: Request):
        actor = actor_of(request)
        return RedirectResponse(HOME[actor.role] if actor else "/login", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return {"ok": True}

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/"):
        return page(request, "login.html", next=next if next.startswith("/") and not next.startswith("//") else "/",
                    failed=False)

    signin_limiter = app.state.signin_limiter = SigninLimiter(store, secret=secret, now_us=now_us)

    @app.post("/login", include_in_schema=False)
    def login(request: Request, username: str = Form(max_length=64), password: str = Form(max_length=1024),
              csrf_token: str = Form(""), next: str = Form("/")):
        check_csrf(request, csrf_token)
        network = client_network(request.client.host if request.client else None,
                                 request.headers.get("x-forwarded-for"), signin_limiter.trusted_proxies)
        wait_s = signin_limiter.retry_after_s(username, network)
        if wait_s:  # too many failures for this username or this network: not even checked
            return templates.TemplateResponse(request, "login.html", _ctx(request, next=next, retry_after_s=wait_s),
                                              status_code=429, headers={"Retry-After": str(wait_s)})
        actor = authenticate(store, username, password)
        if actor is None:
            signin_limiter.failed(username, network)
            time.sleep(0.2)  # a little friction on top of the counted back-off (dashboards/signin_limit.py)
            return templates.TemplateResponse(request, "login.html", _ctx(request, next=next, failed=True), status_code=401)
        signin_limiter.succeeded(username)
        request.session.clear()  # a fresh session: no fixation
        request.session.update(u=actor.username, csrf=secrets.token_urlsafe(32))
        home = HOME[actor.role]
        target = next if next.startswith(home) and not next.startswith("//") else home
        return RedirectResponse(target, status_code=303)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf_token: str = Form("")):
        check_csrf(request, csrf_token)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # docs (signed in) -------------------------------------------------------------------------------
    @app.get("/api/docs", include_in_schema=False)
    def api_docs(request: Request, actor: Actor = Depends(signed_in)):
        spec = app.openapi()
        ops = []
        for path, methods in spec["paths"].items():
            for method, op in methods.items():
                params = [(p["name"], p["in"], p.get("required", False), p.get("schema", {}).get("type", ""))
                          for p in op.get("parameters", [])]
                ops.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                            "description": op.get("description", ""), "access": op.get("x-access", ""),
                            "params": params, "responses": sorted(op.get("responses", {}))})
        return page(request, "api_docs.html", ops=ops, spec=spec)

    # therapist pages ---------------------------------------------------------------------------------
    @app.get("/therapist", include_in_schema=False)
    def therapist_home(request: Request, actor: Actor = Depends(therapist)):
        return page(request, "therapist_list.html")

    @app.get("/therapist/patients/{patient}", include_in_schema=False)
    def therapist_patient_page(request: Request, patient: str = Depends(_therapist_patient)):
        return page(request, "therapist_patient.html", patient=patient)

    @app.post("/therapist/patients/{patient}/notes", include_in_schema=False)
    def therapist_note_form(request: Request, text: str = Form(min_length=1, max_length=5000), csrf_token: str = Form(""),
                            patient: str = Depends(_therapist_patient), actor: Actor = Depends(therapist)):
        check_csrf(request, csrf_token)
        data.add_note(store, patient, actor.username, text.strip(), now_us())
        return RedirectResponse(f"/therapist/patients/{quote(patient)}#notes", status_code=303)

    @app.get("/therapist/sessions/{session_id}", include_in_schema=False)
    def therapist_session_page(request: Request, session_id: str = Depends(_therapist_session)):
        return page(request, "therapist_session.html", session_id=session_id,
                    patient=data.session_patient(store, session_id))

    @app.get("/therapist/live/{patient}", include_in_schema=False)
    def therapist_live_page(request: Request, patient: str = Depends(_therapist_patient)):
        return page(request, "live.html", patient=patient, fps=LIVE_FPS)

    # therapist API ---------------------------------------------------------------------------------------
    T = {"x-access": "therapist (assigned patients only)"}

    @app.get("/api/therapist/patients", openapi_extra=T, tags=["therapist"])
    def api_patients(actor: Actor = Depends(therapist)):
        """The therapist's patients with this week's flags, wearing time and steps."""
        return {"today": today().isoformat(), "patients": data.patient_list(store, actor.username, today(), now_us())}

    @app.get("/api/patients/{patient}", openapi_extra=T, tags=["therapist"])
    def api_patient(patient: str = Depends(_therapist_patient)):
        """Header facts of one patient: this week's wearing time, steps, collector status."""
        return {"patient": patient, "today": today().isoformat(),
                "wearing_h": round(data.wearing_seconds(store, patient, today(), now_us()) / 3600, 2),
                "week": data.week_activity(store, patient, today()), "status": feed.status(patient)}

    @app.get("/api/patients/{patient}/trends", openapi_extra=T, tags=["therapist"])
    def api_trends(patient: str = Depends(_therapist_patient)):
        """Weekly medians of the trend metrics with baseline band (mean ± SD) and real-change threshold."""
        return data.trends(store, patient)

    @app.get("/api/patients/{patient}/flags", openapi_extra=T, tags=["therapist"])
    def api_flags(patient: str = Depends(_therapist_patient)):
        """Compensation flags, newest first, with their evidence."""
        return {"patient": patient, "flags": data.flags(store, patient)}

    @app.get("/api/patients/{patient}/notes", openapi_extra=T, tags=["therapist"])
    def api_notes(patient: str = Depends(_therapist_patient)):
        """Therapist notes, newest first."""
        return {"patient": patient, "notes": data.notes(store, patient)}

    @app.post("/api/patients/{patient}/notes", openapi_extra={"x-access": T["x-access"] + "; header X-CSRF-Token"},
              tags=["therapist"], status_code=201)
    def api_add_note(request: Request, note: NoteIn, patient: str = Depends(_therapist_patient),
                     actor: Actor = Depends(therapist)):
        """Add a note (send the page's CSRF token in ``X-CSRF-Token``)."""
        check_csrf(request, request.headers.get("x-csrf-token"))
        data.add_note(store, patient, actor.username, note.text.strip(), now_us())
        return {"patient": patient, "notes": data.notes(store, patient)}

    @app.get("/api/patients/{patient}/sessions", openapi_extra=T, tags=["therapist"])
    def api_sessions(patient: str = Depends(_therapist_patient), limit: int = Query(20, ge=1, le=500),
                     offset: int = Query(0, ge=0)):
        """The patient's sessions, newest first."""
        return {"patient": patient, "sessions": data.sessions(store, patient, limit=limit, offset=offset)}

    @app.get("/api/sessions/{session_id}", openapi_extra=T, tags=["therapist"])
    def api_session(session_id: str = Depends(_therapist_session)):
        """Session summary and the per-stride table."""
        return data.session_detail(store, session_id)

    @app.get("/api/sessions/{session_id}/pressure", openapi_extra=T, tags=["therapist"])
    def api_session_pressure(session_id: str = Depends(_therapist_session)):
        """Pressure map of both feet (mean pressure while loaded, on the insole grid) and COP gait lines."""
        if session_id in pressure_cache:
            pressure_cache.move_to_end(session_id)
            return pressure_cache[session_id]
        row = store.query("SELECT start_us, state FROM sessions WHERE session_id = ?", (session_id,)).iloc[0]
        from dashboards.plots import session_pressure

        result = session_pressure(list(store.session_batches(session_id)), data.strides(store, session_id),
                                  int(row["start_us"]))
        result["session_id"] = session_id
        if row["state"] == "closed":  # a closed session never changes
            pressure_cache[session_id] = result
            while len(pressure_cache) > session_cache_n:
                pressure_cache.popitem(last=False)
        return result

    @app.get("/api/patients/{patient}/live", openapi_extra=T, tags=["therapist"])
    def api_live_snapshot(patient: str = Depends(_therapist_patient)):
        """One live frame per foot (latest pressure, COP trail) as last heard; see ``/live/stream`` for updates."""
        return feed.snapshot(patient)

    @app.get("/api/patients/{patient}/live/stream", openapi_extra=T, tags=["therapist"],
             response_class=StreamingResponse)
    async def api_live_stream(request: Request, patient: str = Depends(_therapist_patient)):
        """Server-sent events: a ``frame`` event (same body as ``/live``) ``LIVE_FPS`` times a second."""
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

    # patient ----------------------------------------------------------------------------------------------
    @app.get("/me", include_in_schema=False)
    def me_page(request: Request, patient: str = Depends(_own_patient)):
        return page(request, "me.html")

    @app.get("/api/me/overview", openapi_extra={"x-access": "patient (own data only)"}, tags=["patient"])
    def api_me(patient: str = Depends(_own_patient)):
        """Are my insoles connected and recording, how much did I walk this week, my trend in plain words."""
        status = feed.status(patient)
        open_session = not store.query("SELECT 1 AS x FROM sessions WHERE patient = ? AND state = 'open'", (patient,)).empty
        week = data.week_activity(store, patient, today())
        return {"status": _plain_status(status, open_session), "week": week,
                "steps": sum(d["steps"] for d in week), "walking_min": round(sum(d["walking_min"] for d in week), 1),
                "worn_h": round(data.wearing_seconds(store, patient, today(), now_us()) / 3600, 1),
                "trend": data.plain_trend(store, patient, today())}

    # researcher ---------------------------------------------------------------------------------------------
    R = {"x-access": "researcher (de-identified data only)"}

    @app.get("/research", include_in_schema=False)
    def research_page(request: Request, actor: Actor = Depends(researcher)):
        return page(request, "research.html")

    @app.get("/api/research/cohorts", openapi_extra=R, tags=["researcher"])
    def api_cohorts(actor: Actor = Depends(researcher)):
        """Cohort names."""
        ensure_subject_labels(store)
        return {"cohorts": data.cohorts(store)}

    @app.get("/api/research/sessions", openapi_extra=R, tags=["researcher"])
    def api_research_sessions(actor: Actor = Depends(researcher), cohort: str | None = None,
                              from_day: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$"),
                              to_day: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$")):
        """Closed sessions by research label, filtered by cohort and by day (inclusive, UTC)."""
        try:
            rows = data.research_sessions(store, cohort=cohort or None, from_day=from_day, to_day=to_day)
        except ValueError as exc:
            raise BadRequest(f"bad day: {exc}") from exc
        return {"sessions": rows}

    def _research_label(label: str) -> tuple:
        found = data.research_session(store, label)
        if found is None:
            raise NotFound(f"no session {label!r}")
        return found

    @app.get("/api/research/sessions/{label}/strides.csv", openapi_extra=R, tags=["researcher"],
             response_class=Response, responses={200: {"content": {"text/csv": {}}}})
    def api_research_csv(label: str, actor: Actor = Depends(researcher)):
        """Per-stride table of one session, de-identified, as CSV (the columns of ``kinetic export``'s strides table)."""
        from dashboards.data import strides as stored_strides
        from research.export import labelled_strides
        from research.formats import table_text

        session_id, subject, _cohort, _day = _research_label(label)
        body = table_text(labelled_strides(stored_strides(store, session_id), subject, label))
        return Response(body, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{label}_strides.csv"'})

    @app.get("/api/research/sessions/{label}/export.zip", openapi_extra=R, tags=["researcher"],
             response_class=Response, responses={200: {"content": {"application/zip": {}}}})
    def api_research_export(label: str, actor: Actor = Depends(researcher),
                            format: str = Query("parquet", pattern="^(parquet|csv|bids)$")):
        """One session exported exactly as ``kinetic export --format FORMAT`` writes it (raw samples from the
        archive, strides, events, manifest), de-identified, as a zip file."""
        import shutil
        import tempfile
        import zipfile
        from pathlib import Path

        from starlette.background import BackgroundTask
        from starlette.responses import FileResponse

        from research.export import select_sessions, software_version, write_export

        session_id, _subject, _cohort, _day = _research_label(label)
        if archive is None:
            raise NotFound("this dashboard has no raw archive configured (kinetic dashboard --archive)")
        tmp = Path(tempfile.mkdtemp(prefix="kinetic-export-"))
        try:
            chosen = select_sessions(store, archive, session=session_id)
            out = write_export(chosen, tmp / label, format, software=software_version(), progress=False).out
            zip_path = tmp / f"{label}_{format}.zip"
            with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(out.rglob("*")):
                    if path.is_file():
                        zf.write(path, f"{label}/{path.relative_to(out)}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return FileResponse(zip_path, media_type="application/zip", filename=zip_path.name,
                            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))

    # admin --------------------------------------------------------------------------------------------------
    @app.get("/admin", include_in_schema=False)
    def admin_page(request: Request, actor: Actor = Depends(admin)):
        return page(request, "admin.html")

    @app.get("/api/admin/accounts", openapi_extra={"x-access": "admin"}, tags=["admin"])
    def api_accounts(actor: Actor = Depends(admin)):
        """Accounts (no password hashes) and therapist assignments."""
        acc = store.query("SELECT username, role, display_name, patient, disabled, created_us FROM accounts ORDER BY username")
        links = store.query("SELECT therapist, patient FROM therapist_patients ORDER BY therapist, patient")
        return {"accounts": [{k: data._clean(v) for k, v in r.items()} for r in acc.to_dict("records")],
                "assignments": links.to_dict("records")}

    # any signed-in account ---------------------------------------------------------------------------------------
    @app.get("/api/whoami", openapi_extra={"x-access": "any signed-in account"}, tags=["account"])
    def api_whoami(request: Request, actor: Actor = Depends(signed_in)):
        """The signed-in account, its home page and the CSRF token for API writes."""
        return {"username": actor.username, "role": actor.role, "display_name": actor.display_name,
                "home": HOME[actor.role], "csrf_token": csrf_token(request)}

    return app


def _plain_status(status: dict, open_session: bool) -> dict:
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
