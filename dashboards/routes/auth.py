"""Signing in and out, the start page, health, the signed-in account and the API docs."""

from __future__ import annotations

import secrets
import time

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from dashboards.auth import Actor, authenticate, end_sessions, session_values
from dashboards.deps import HOME, Dashboard, actor_of, check_csrf, csrf_token, current_user, dashboard, render
from dashboards.signin_limit import client_network

#: public pages: start, health, sign-in, sign-out
router = APIRouter()
#: any signed-in account (included last: it comes last in the API docs)
account_router = APIRouter()


@router.get("/", include_in_schema=False)
def index(request: Request):
    actor = actor_of(request)
    return RedirectResponse(HOME[actor.role] if actor else "/login", status_code=303)


@router.get("/healthz", include_in_schema=False)
def healthz():
    return {"ok": True}


@router.get("/login", include_in_schema=False)
def login_form(request: Request, next: str = "/"):
    return render(request, "login.html", next=next if next.startswith("/") and not next.startswith("//") else "/",
                  failed=False)


@router.post("/login", include_in_schema=False)
def login(request: Request, username: str = Form(max_length=64), password: str = Form(max_length=1024),
          csrf_token: str = Form(""), next: str = Form("/"), d: Dashboard = Depends(dashboard)):
    check_csrf(request, csrf_token)
    limiter = d.limiter
    network = client_network(request.client.host if request.client else None,
                             request.headers.get("x-forwarded-for"), limiter.trusted_proxies)
    wait_s = limiter.retry_after_s(username, network)
    if wait_s:  # too many failures for this username or this network: not even checked
        return render(request, "login.html", status_code=429, headers={"Retry-After": str(wait_s)}, next=next,
                      retry_after_s=wait_s)
    actor = authenticate(d.store, username, password)
    if actor is None:
        limiter.failed(username, network)
        time.sleep(0.2)  # a little friction on top of the counted back-off (dashboards/signin_limit.py)
        return render(request, "login.html", status_code=401, next=next, failed=True)
    limiter.succeeded(username)
    request.session.clear()  # a fresh session: no fixation
    request.session.update(session_values(actor), csrf=secrets.token_urlsafe(32))
    home = HOME[actor.role]
    target = next if next.startswith(home) and not next.startswith("//") else home
    return RedirectResponse(target, status_code=303)


@router.post("/logout", include_in_schema=False)
def logout(request: Request, csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    actor = actor_of(request)
    if actor is not None:  # every session of the account ends, copies of this cookie included
        end_sessions(dashboard(request).store, actor.username)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/api/docs", include_in_schema=False)
def api_docs(request: Request, actor: Actor = Depends(current_user)):
    spec = request.app.openapi()
    ops = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            params = [(p["name"], p["in"], p.get("required", False), p.get("schema", {}).get("type", ""))
                      for p in op.get("parameters", [])]
            ops.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                        "description": op.get("description", ""), "access": op.get("x-access", ""),
                        "params": params, "responses": sorted(op.get("responses", {}))})
    return render(request, "api_docs.html", ops=ops, spec=spec)


@account_router.get("/api/whoami", openapi_extra={"x-access": "any signed-in account"}, tags=["account"])
def api_whoami(request: Request, actor: Actor = Depends(current_user)):
    """The signed-in account, its home page and the CSRF token for API writes."""
    return {"username": actor.username, "role": actor.role, "display_name": actor.display_name,
            "home": HOME[actor.role], "csrf_token": csrf_token(request)}
