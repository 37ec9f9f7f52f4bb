"""Access rules of the dashboards, by enumerating every route of the app for every role.

The app is served in-process (uvicorn in a thread) and called over HTTP with httpx, signed in
through the real login form. ``EXPECTED`` is this test's own table of who may call what; a
route the app has and the table lacks fails the test, so a new route cannot skip review.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import date

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from dashboards import data
from dashboards.app import create_app
from dashboards.auth import set_disabled
from insole_common.calendar import day_of
from storage.archive import RawArchive
from storage.flags import save_detection
from storage.store import SQLiteStore
from tests.fixtures.dashboard import FIXTURE_PASSWORD, ServerThread, build_fixture, fixture_flag

TODAY = date(2026, 11, 20)
ROLES = {"anonymous": None, "therapist": "ther-1", "patient": "patient-a", "researcher": "res-1", "admin": "admin-1"}

#: (method, path) -> who may call it: public | signed_in | therapist | patient | researcher | admin
EXPECTED = {
    ("GET", "/"): "public",
    ("GET", "/healthz"): "public",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("POST", "/logout"): "public",  # signing out is harmless for anyone (CSRF still required)
    ("GET", "/api/docs"): "signed_in",
    ("GET", "/api/openapi.json"): "public",
    ("GET", "/api/whoami"): "signed_in",
    ("GET", "/therapist"): "therapist",
    ("GET", "/therapist/patients/{patient}"): "therapist",
    ("POST", "/therapist/patients/{patient}/notes"): "therapist",
    ("GET", "/therapist/sessions/{session_id}"): "therapist",
    ("GET", "/therapist/live/{patient}"): "therapist",
    ("GET", "/api/therapist/patients"): "therapist",
    ("GET", "/api/patients/{patient}"): "therapist",
    ("GET", "/api/patients/{patient}/trends"): "therapist",
    ("GET", "/api/patients/{patient}/flags"): "therapist",
    ("GET", "/api/patients/{patient}/notes"): "therapist",
    ("POST", "/api/patients/{patient}/notes"): "therapist",
    ("GET", "/api/patients/{patient}/sessions"): "therapist",
    ("GET", "/api/sessions/{session_id}"): "therapist",
    ("GET", "/api/sessions/{session_id}/pressure"): "therapist",
    ("GET", "/api/patients/{patient}/live"): "therapist",
    ("POST", "/therapist/patients/{patient}/flags/{series}/acknowledge"): "therapist",
    ("POST", "/api/patients/{patient}/flags/{series}/acknowledge"): "therapist",
    ("GET", "/therapist/digest"): "therapist",
    ("GET", "/therapist/patients/{patient}/digest"): "therapist",
    ("GET", "/api/therapist/digest"): "therapist",
    ("GET", "/api/patients/{patient}/digest"): "therapist",
    ("GET", "/api/patients/{patient}/live/stream"): "therapist",
    ("GET", "/me"): "patient",
    ("GET", "/api/me/overview"): "patient",
    ("GET", "/research"): "researcher",
    ("GET", "/api/research/cohorts"): "researcher",
    ("GET", "/api/research/sessions"): "researcher",
    ("GET", "/api/research/sessions/{label}/strides.csv"): "researcher",
    ("GET", "/api/research/sessions/{label}/export.zip"): "researcher",
    ("GET", "/admin"): "admin",
    ("GET", "/api/admin/accounts"): "admin",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    store = SQLiteStore(tmp_path_factory.mktemp("roles") / "kinetic.sqlite")
    created = build_fixture(store, today=TODAY, days=14, strides_per_session=10, simulated_walk_s=None)
    # 14 days are all baseline: one active flag to acknowledge
    save_detection(store, "pat-a", [fixture_flag("pat-a", "lateral_load_fraction_L", "2026-11-18", 1)], [],
                   keep_auto_baselines=True)
    app = create_app(store, secret="r" * 48, today=lambda: TODAY,
                     archive=RawArchive(tmp_path_factory.mktemp("roles-archive")))
    label = data.research_sessions(store)[0]["session"]
    with ServerThread(app) as server:
        yield {"app": app, "url": server.url, "store": store, "created": created, "label": label}
    store.close()


def client_for(site, role: str) -> tuple[httpx.Client, str]:
    """A client signed in as ``role`` (or not at all), and its CSRF token."""
    c = httpx.Client(base_url=site["url"], follow_redirects=False, timeout=10)
    page = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    username = ROLES[role]
    if username:
        r = c.post("/login", data={"username": username, "password": FIXTURE_PASSWORD, "csrf_token": token, "next": "/"})
        assert r.status_code == 303, r.text
        token = c.get("/api/whoami").json()["csrf_token"]
    return c, token


def app_routes(app) -> set[tuple[str, str]]:
    out = set()
    for route in iter_route_contexts(app.routes):  # through the included routers
        if isinstance(route.original_route, Mount):
            continue
        for method in route.methods - {"HEAD"}:
            out.add((method, route.path))
    return out


def test_every_route_is_in_the_table(site):
    assert app_routes(site["app"]) == set(EXPECTED)


def fill(path: str, site, mine: bool) -> str:
    pat = "pat-a" if mine else "pat-c"  # ther-1 has pat-a and pat-b; pat-c is ther-2's
    return (path.replace("{patient}", pat)
            .replace("{session_id}", site["created"]["sessions"][pat][-1])
            .replace("{series}", "lateral_load_fraction_L")  # pat-a's active flag (site)
            .replace("{label}", site["label"] if mine else "R-000000000000"))


def call(c: httpx.Client, token: str, method: str, path: str) -> httpx.Response:
    if path.endswith("/live/stream"):
        with c.stream("GET", path) as r:
            if r.status_code == 200:
                first = next(r.iter_lines())
                assert first.startswith("retry:")
            return r
    if method == "GET":
        return c.get(path)
    if path == "/login":
        return c.post(path, data={"username": "nobody", "password": "x" * 12, "csrf_token": token})
    if path.startswith("/api/"):
        return c.post(path, json={"text": "role test"}, headers={"X-CSRF-Token": token})
    return c.post(path, data={"text": "role test", "csrf_token": token})


def expected_status(rule: str, role: str, method: str, path: str, mine: bool) -> set[int]:
    api = path.startswith("/api/")
    if rule == "public":
        if path == "/login" and method == "POST":
            return {401}  # wrong credentials, whoever asks
        return {200, 303}
    if role == "anonymous":
        return {401} if api else {303}
    if rule != "signed_in" and rule != role:
        return {403}
    has_target = any(p in path for p in ("{patient}", "{session_id}", "{label}"))
    if has_target and not mine:
        return {404}
    if method == "POST":
        return {201} if api else {303}
    return {200}


@pytest.mark.parametrize("role", list(ROLES))
def test_every_route_for_every_role(site, role):
    failures = []
    shared = client_for(site, role)
    for (method, template), rule in sorted(EXPECTED.items()):
        for mine in (True, False):
            if not mine and not any(p in template for p in ("{patient}", "{session_id}", "{label}")):
                continue
            # signing in or out changes the session: those get a client of their own
            c, token = client_for(site, role) if template in ("/login", "/logout") else shared
            path = fill(template, site, mine)
            r = call(c, token, method, path)
            want = expected_status(rule, role, method, template, mine)
            if r.status_code not in want:
                failures.append(f"{role} {method} {path}: {r.status_code}, expected {sorted(want)}")
            if role == "anonymous" and r.status_code == 303 and rule != "public":
                assert r.headers["location"].startswith("/login?next=")
            if c is not shared[0]:
                c.close()
            if template == "/logout" and role != "anonymous":  # signing out ends every session of the account
                shared[0].close()
                shared = client_for(site, role)
    shared[0].close()
    assert not failures, "\n".join(failures)


def test_researcher_sees_no_identifiers(site):
    c, _ = client_for(site, "researcher")
    store = site["store"]
    secrets_ = set(store.query("SELECT pseudonym FROM patients")["pseudonym"]) | \
        set(store.query("SELECT session_id FROM sessions")["session_id"]) | \
        set(store.query("SELECT device_id FROM devices")["device_id"]) | {"Alex", "Cam", "heel pain in the morning"}
    secrets_ |= {d for devs in store.query("SELECT devices_json FROM sessions")["devices_json"]
                 for d in json.loads(devs).values()}
    secrets_ |= {day_of(int(t)) for t in store.query("SELECT start_us FROM sessions")["start_us"]}  # real days
    bodies = [c.get("/api/research/cohorts").content, c.get("/api/research/sessions").content,
              c.get("/research").content,
              c.get(f"/api/research/sessions/{site['label']}/strides.csv").content]
    # BIDS-Motion of a session without samples (this site archives none) is refused, saying why (issue 20)
    refused = c.get(f"/api/research/sessions/{site['label']}/export.zip?format=bids")
    assert refused.status_code == 400 and "BIDS-Motion needs" in refused.json()["detail"]
    bodies.append(refused.content)
    for fmt in ("csv",):  # the zip is compressed: read what a researcher unpacks, names included
        reply = c.get(f"/api/research/sessions/{site['label']}/export.zip?format={fmt}")
        assert reply.status_code == 200
        with zipfile.ZipFile(io.BytesIO(reply.content)) as zf:
            assert any(n.endswith("manifest.json") for n in zf.namelist())
            bodies += [zf.read(n) for n in zf.namelist()] + ["\n".join(zf.namelist()).encode()]
    for body in bodies:
        for s in secrets_:
            assert s.encode() not in body, s


def test_research_filters(site):
    c, _ = client_for(site, "researcher")
    every = c.get("/api/research/sessions").json()["sessions"]
    control = c.get("/api/research/sessions", params={"cohort": "control"}).json()["sessions"]
    assert 0 < len(control) < len(every) and {s["cohort"] for s in control} == {"control"}
    # days are shifted per subject: the filter works on the days the researcher sees
    assert all(s["day"] < "1927" for s in every)
    days = sorted({s["day"] for s in every if s["cohort"] == "control"})
    lo, hi = days[3], days[9]
    week = c.get("/api/research/sessions", params={"from_day": lo, "to_day": hi, "cohort": "control"}).json()["sessions"]
    assert len(week) == 7 and all(lo <= s["day"] <= hi for s in week)
    assert c.get("/api/research/sessions", params={"from_day": "2026-11-14", "cohort": "control"}).json()["sessions"] == []
    assert c.get("/api/research/sessions", params={"from_day": "2026-13-40"}).status_code == 400
    assert c.get("/api/research/sessions", params={"from_day": "yesterday"}).status_code == 422


def test_strides_csv_is_the_stored_strides(site):
    c, _ = client_for(site, "researcher")
    label = site["label"]
    session_id, subject, _cohort, _day = data.research_session(site["store"], label)
    body = c.get(f"/api/research/sessions/{label}/strides.csv").text
    lines = body.split("\n")
    assert body.endswith("\n") and "\r" not in body
    table = data.strides(site["store"], session_id)
    assert len(lines) - 2 == len(table)
    assert lines[0].startswith("subject,session,side,heel_strike_s,toe_off_s,next_heel_strike_s,stride_time_s,")
    first = lines[1].split(",")
    assert first[:3] == [subject, label, table.iloc[0]["side"]]
    assert float(first[3]) == table.iloc[0]["heel_strike_s"]  # shortest round-trip form: exact


def test_csrf_is_required(site):
    c, _token = client_for(site, "therapist")
    assert c.post("/therapist/patients/pat-a/notes", data={"text": "no token"}).status_code == 403
    assert c.post("/therapist/patients/pat-a/notes", data={"text": "bad", "csrf_token": "x" * 43}).status_code == 403
    assert c.post("/api/patients/pat-a/notes", json={"text": "no header"}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    anon = httpx.Client(base_url=site["url"])
    assert anon.post("/login", data={"username": "ther-1", "password": FIXTURE_PASSWORD}).status_code == 403
    notes = c.get("/api/patients/pat-a/notes").json()["notes"]
    assert not any(n["text"] in ("no token", "bad", "no header") for n in notes)


def test_disabled_account_and_forged_cookie(site):
    c, _ = client_for(site, "admin")
    assert c.get("/api/admin/accounts").status_code == 200
    assert b"argon2" not in c.get("/api/admin/accounts").content  # hashes never leave the server
    set_disabled(site["store"], "admin-1", True)
    try:
        assert c.get("/api/admin/accounts").status_code == 401  # at once, same cookie
        fresh = httpx.Client(base_url=site["url"])
        page = fresh.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = fresh.post("/login", data={"username": "admin-1", "password": FIXTURE_PASSWORD, "csrf_token": token})
        assert r.status_code == 401
    finally:
        set_disabled(site["store"], "admin-1", False)
    forged = httpx.Client(base_url=site["url"], cookies={"kc_session": "eyJ1IjogInRoZXItMSJ9.forged.sig"})
    assert forged.get("/api/therapist/patients").status_code == 401


def test_secret_is_required(tmp_path):
    store = SQLiteStore(tmp_path / "k.sqlite")
    for bad in ("", "short"):
        with pytest.raises(ValueError, match="KINETIC_DASHBOARD_SECRET"):
            create_app(store, secret=bad)


def test_security_headers(site):
    r = httpx.get(site["url"] + "/login")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
