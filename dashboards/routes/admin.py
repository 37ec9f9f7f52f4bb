"""The admin's page and API: accounts (never their password hashes) and therapist assignments; no gait data."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from dashboards.auth import Actor
from dashboards.deps import Dashboard, admin, dashboard, render
from storage.accounts import accounts, assignments

router = APIRouter(tags=["admin"])


@router.get("/api/admin/accounts", openapi_extra={"x-access": "admin"})
def api_accounts(actor: Actor = Depends(admin), d: Dashboard = Depends(dashboard)):
    """Accounts (no password hashes) and therapist assignments."""
    return {"accounts": accounts(d.store),
            "assignments": assignments(d.store)}


@router.get("/admin", include_in_schema=False)
def admin_page(request: Request, actor: Actor = Depends(admin)):
    return render(request, "admin.html")
