"""Who is asking, and may they: the dependencies every route of :mod:`dashboards.routes` declares.

=============  =================================================================================
therapist      their assigned patients (``therapist_patients``): list, trends, flags, notes,
               sessions, pressure maps, live view; anything else is "not found"
patient        ``/me`` and ``/api/me/*`` only: their own status, week and trend in plain words
researcher     ``/research`` and ``/api/research/*``: research labels, cohorts, days and metrics;
               never a pseudonym, session id, device id, name or note
admin          ``/admin`` and ``/api/admin/accounts``: accounts and assignments, no gait data
=============  =================================================================================

Not signed in: pages redirect to ``/login``; the API answers 401 (:class:`NotSignedIn`). Wrong role:
403 (:class:`Forbidden`). The rules are the dependencies :func:`need` (a role), :func:`therapist_patient`,
:func:`therapist_session` and :func:`own_patient`; what the app needs (store, clock, live feed, archive,
sign-in limiter, templates) is the :class:`Dashboard` on ``app.state.dashboard``.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from dashboards import data
from dashboards.auth import Actor, is_assigned, session_actor
from dashboards.live import LiveFeed
from dashboards.signin_limit import SigninLimiter
from storage.archive import RawArchive
from storage.store import Store

#: where each role lands after signing in
HOME = {"therapist": "/therapist", "patient": "/me", "researcher": "/research", "admin": "/admin"}


class NotSignedIn(Exception):
    pass


class Forbidden(Exception):
    pass


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


@dataclass
class Dashboard:
    """Everything the routes need besides the request (``app.state.dashboard``)."""

    store: Store
    feed: LiveFeed
    templates: Jinja2Templates
    limiter: SigninLimiter
    #: the clock (injectable for tests)
    today: Callable[[], date]
    now_us: Callable[[], int]
    #: raw samples for researcher downloads (None: not configured)
    archive: RawArchive | None = None
    #: pressure maps of closed sessions, most recently used last
    session_cache_n: int = 16
    pressure_cache: OrderedDict[str, dict] = field(default_factory=OrderedDict)


def dashboard(request: Request) -> Dashboard:
    return request.app.state.dashboard


def actor_of(request: Request) -> Actor | None:
    """The signed-in account (read back from the database on every request), or None; a session that
    sign-out, a password reset or disabling the account ended is None (:func:`dashboards.auth.session_actor`)."""
    return session_actor(dashboard(request).store, request.session)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, supplied: str | None) -> None:
    expected = request.session.get("csrf")
    if not (isinstance(expected, str) and isinstance(supplied, str) and secrets.compare_digest(expected, supplied)):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again")


def render(request: Request, name: str, *, status_code: int = 200, headers: dict | None = None, **extra):
    """A server-rendered page; every template gets the signed-in ``actor`` and the ``csrf`` token."""
    context = {"actor": actor_of(request), "csrf": csrf_token(request), **extra}
    return dashboard(request).templates.TemplateResponse(request, name, context, status_code=status_code,
                                                         headers=headers)


def need(*roles: str) -> Callable[[Request], Actor]:
    """A dependency: the signed-in account, which must have one of ``roles`` (none given: any)."""
    def current_user(request: Request) -> Actor:
        actor = actor_of(request)
        if actor is None:
            raise NotSignedIn()
        if roles and actor.role not in roles:
            raise Forbidden(f"this needs a {' or '.join(roles)} account")
        return actor
    return current_user


current_user = need()
therapist = need("therapist")
patient_role = need("patient")
researcher = need("researcher")
admin = need("admin")


def therapist_patient(patient: str, actor: Actor = Depends(therapist), d: Dashboard = Depends(dashboard)) -> str:
    """The path's ``patient``, when it is one of the therapist's."""
    if not is_assigned(d.store, actor.username, patient):
        raise NotFound(f"no patient {patient!r} among yours")
    return patient


def therapist_session(session_id: str, actor: Actor = Depends(therapist), d: Dashboard = Depends(dashboard)) -> str:
    """The path's ``session_id``, when it is a session of one of the therapist's patients."""
    owner = data.session_patient(d.store, session_id)
    if owner is None or not is_assigned(d.store, actor.username, owner):
        raise NotFound(f"no session {session_id!r} among your patients'")
    return session_id


def own_patient(actor: Actor = Depends(patient_role)) -> str:
    """The signed-in patient's own pseudonym."""
    if not actor.patient:
        raise NotFound("this account is not linked to a patient")
    return actor.patient
