"""The dashboards web app (FastAPI + Jinja2 pages + a JSON API under ``/api``).

:func:`create_app` puts the app's state on ``app.state.dashboard`` (:class:`dashboards.deps.Dashboard`),
adds the error pages and headers, and includes one router per role or resource (:mod:`dashboards.routes`).
Who may call what is decided by the dependencies of :mod:`dashboards.deps` and only there.
Every API route carries its rule as ``x-access`` in the OpenAPI document, and
``tests/test_dashboard_roles.py`` enumerates every route for every role.

Pages are thin: a server-rendered shell whose script (``static/pages.js``) reads the
JSON API and draws with ``static/charts.js`` (hand-written SVG, no library, no CDN).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from dashboards.deps import BadRequest, Dashboard, Forbidden, NotFound, NotSignedIn, render
from dashboards.live import LiveFeed
from dashboards.routes import admin, auth, live, patient, researcher, therapist
from dashboards.signin_limit import SigninLimiter
from storage.store import Store

HERE = Path(__file__).parent
SESSION_COOKIE = "kc_session"
SESSION_MAX_AGE_S = 8 * 3600
MIN_SECRET_CHARS = 32
#: the routers, in the order of the API docs
ROUTERS = (auth.router, therapist.router, live.router, patient.router, researcher.router, admin.router,
           auth.account_router)
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")


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
    today = today or (lambda: datetime.fromtimestamp(now_us() / 1e6, tz=UTC).date())

    app = FastAPI(
        title="Kinetic Chain dashboards API",
        version="1",
        description="JSON behind the therapist, patient and researcher pages. Sign in at /login first; "
        "the session cookie authorises these calls. `x-access` on each operation says who may call it.",
        docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
    )
    limiter = SigninLimiter(store, secret=secret, now_us=now_us)
    app.state.dashboard = Dashboard(store=store, feed=feed, templates=Jinja2Templates(directory=str(HERE / "templates")),
                                    limiter=limiter, today=today, now_us=now_us, archive=archive,
                                    session_cache_n=session_cache_n)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _add_error_handlers(app)
    app.middleware("http")(_security_headers)
    # the session middleware wraps everything above (added last = outermost)
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE_S,
                       same_site="lax", https_only=https_only)
    for router in ROUTERS:
        app.include_router(router)
    return app


def _error(request: Request, status: int, message: str):
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    return render(request, "error.html", status_code=status, status=status, message=message)


def _add_error_handlers(app: FastAPI) -> None:
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


async def _security_headers(request: Request, call_next):
    started = time.perf_counter()
    response = await call_next(request)
    # server time, for the benchmark and the browser's network panel
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.url.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
