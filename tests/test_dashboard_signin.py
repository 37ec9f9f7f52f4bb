"""Rate-limited sign-in (dashboards/signin_limit.py) through the real app served by uvicorn.

Per username: 5 failures free, then a doubling wait answered with 429 + Retry-After, during
which even the right password is not accepted. Per client network: 20 failures free. The
counts live in the store, so two dashboard processes on one database (SQLite file or
PostgreSQL schema) enforce one limit. The clock is injected, so nothing here sleeps for the
back-off.
"""

from __future__ import annotations

import re
import uuid

import httpx
import psycopg
import pytest

from dashboards.app import create_app
from dashboards.auth import add_account, set_disabled
from dashboards.signin_limit import SigninLimiter, _networks, client_network
from kinetic.provision import provision_therapist
from storage.store import PostgresStore, SQLiteStore
from tests.conftest import PG_DSN
from tests.fixtures.dashboard import ServerThread

PASSWORD = "right password 123"
SECRET = "s" * 48


class Clock:
    def __init__(self) -> None:
        self.us = 1_900_000_000_000_000

    def __call__(self) -> int:
        return self.us

    def advance(self, seconds: float) -> None:
        self.us += int(seconds * 1e6)


def sign_in(url: str, username: str, password: str, *, forwarded_for: str | None = None) -> httpx.Response:
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as c:
        token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return c.post("/login", data={"username": username, "password": password, "csrf_token": token},
                      headers=headers)


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request, tmp_path):
    """Two store objects on one database: what two dashboard processes have."""
    if request.param == "sqlite":
        pair = [SQLiteStore(tmp_path / "kinetic.sqlite"), SQLiteStore(tmp_path / "kinetic.sqlite")]
        yield pair
        for s in pair:
            s.close()
        return
    schema = f"t_signin_{uuid.uuid4().hex[:10]}"
    try:
        pair = [PostgresStore(PG_DSN, schema=schema)]
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_DSN} is not reachable ({exc}); start it (make test does) — not skipping")
    pair.append(PostgresStore(PG_DSN, schema=schema))
    yield pair
    for s in pair:
        s.close()
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("KINETIC_TRUSTED_PROXIES", "")
    store = SQLiteStore(tmp_path / "kinetic.sqlite")
    clock = Clock()
    app = create_app(store, secret=SECRET, now_us=clock)
    for name in ("ther-a", "ther-b"):
        add_account(store, name, "therapist", PASSWORD)
    with ServerThread(app) as server:
        yield server.url, clock, store
    store.close()


def test_username_backs_off_with_429_and_retry_after(site):
    url, clock, store = site
    for _ in range(5):
        assert sign_in(url, "ther-a", "wrong password").status_code == 401
    r = sign_in(url, "ther-a", PASSWORD)  # the right password, but the username is waiting
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert "Too many failed sign-ins. Try again in 1 s." in r.text
    with httpx.Client(base_url=url, cookies=r.cookies, timeout=10) as c:
        assert c.get("/api/whoami").status_code == 401  # and no signed-in session was handed out
    assert sign_in(url, "ther-b", PASSWORD).status_code == 303  # another user on the same client is not held up
    clock.advance(1)
    assert sign_in(url, "ther-a", "wrong password").status_code == 401  # 6th failure: now 2 s
    r = sign_in(url, "ther-a", PASSWORD)
    assert (r.status_code, r.headers["retry-after"]) == (429, "2")
    clock.advance(1)
    assert sign_in(url, "ther-a", PASSWORD).headers["retry-after"] == "1"
    clock.advance(1)
    assert sign_in(url, "ther-a", PASSWORD).status_code == 303  # waited: signs in, and the count is cleared
    for _ in range(4):
        assert sign_in(url, "ther-a", "wrong password").status_code == 401
    assert sign_in(url, "ther-a", PASSWORD).status_code == 303
    # the table holds neither usernames nor addresses
    keys = " ".join(store.query("SELECT key FROM signin_failures")["key"])
    assert keys and "ther-a" not in keys and "127.0.0.1" not in keys


def test_wait_is_capped_and_forgotten_after_an_hour(site):
    url, clock, store = site
    other_process = SigninLimiter(store, secret=SECRET, now_us=clock)
    for _ in range(30):  # 30 failures spread over 5 hours: counted on, the wait stops at 15 minutes
        other_process.failed("ther-a", "192.0.2.1")
        clock.advance(600)
    clock.advance(-600)
    r = sign_in(url, "ther-a", PASSWORD)
    assert (r.status_code, r.headers["retry-after"]) == (429, "900")
    clock.advance(3600 + 1)  # an hour after the last failure it is forgotten: 5 free failures again
    for _ in range(5):
        assert sign_in(url, "ther-a", "wrong password").status_code == 401
    assert sign_in(url, "ther-a", PASSWORD).status_code == 429


def test_network_limit_behind_a_trusted_proxy(tmp_path, monkeypatch):
    monkeypatch.setenv("KINETIC_TRUSTED_PROXIES", "127.0.0.0/8")
    store = SQLiteStore(tmp_path / "kinetic.sqlite")
    clock = Clock()
    app = create_app(store, secret=SECRET, now_us=clock)
    add_account(store, "ther-a", "therapist", PASSWORD)
    with ServerThread(app) as server:
        guesser = "198.51.100.1, 203.0.113.7"  # first hop is the client's own claim; the proxy added the last
        for i in range(20):  # a different username each time: only the network counts up
            assert sign_in(server.url, f"user-{i}", "wrong password", forwarded_for=guesser).status_code == 401
        r = sign_in(server.url, "ther-a", PASSWORD, forwarded_for="10.9.9.9, 203.0.113.7")
        assert (r.status_code, r.headers["retry-after"]) == (429, "1")
        # someone else behind the same proxy signs in
        assert sign_in(server.url, "ther-a", PASSWORD, forwarded_for="198.51.100.1").status_code == 303
    store.close()


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy():
    assert client_network("127.0.0.1", "203.0.113.7") == "127.0.0.1"
    assert client_network("127.0.0.1", "203.0.113.7", trusted_proxies=()) == "127.0.0.1"
    proxies = _networks("10.0.0.0/8, 127.0.0.1")
    assert client_network("10.1.2.3", "1.1.1.1, 203.0.113.7", proxies) == "203.0.113.7"
    assert client_network("192.0.2.1", "203.0.113.7", proxies) == "192.0.2.1"
    assert client_network("10.1.2.3", "not-an-address", proxies) == "10.1.2.3"
    # IPv6 clients are counted per /64 (one host owns the whole /64), IPv4-mapped as IPv4
    assert client_network("2001:db8:1:2:aaaa::1") == client_network("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_network("::ffff:192.0.2.9") == "192.0.2.9"


def test_two_dashboard_processes_share_one_limit(stores, monkeypatch):
    monkeypatch.setenv("KINETIC_TRUSTED_PROXIES", "")
    clock = Clock()
    apps = [create_app(s, secret=SECRET, now_us=clock) for s in stores]
    add_account(stores[0], "ther-a", "therapist", PASSWORD)
    with ServerThread(apps[0]) as one, ServerThread(apps[1]) as two:
        for url in (one.url, two.url, one.url, two.url, one.url):  # 5 failures spread over both
            assert sign_in(url, "ther-a", "wrong password").status_code == 401
        assert sign_in(two.url, "ther-a", PASSWORD).status_code == 429
        assert sign_in(one.url, "ther-a", PASSWORD).status_code == 429
        clock.advance(1)
        assert sign_in(two.url, "ther-a", PASSWORD).status_code == 303


def test_session_cookie_and_csrf_at_sign_in(site):
    url, _clock, _store = site
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as c:
        page = c.get("/login")
        cookie = page.headers["set-cookie"].lower()
        assert "kc_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        before = dict(c.cookies)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = c.post("/login", data={"username": "ther-a", "password": PASSWORD})  # no CSRF token
        assert r.status_code == 403
        r = c.post("/login", data={"username": "ther-a", "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 303
        assert c.get("/api/whoami").json()["csrf_token"] != token  # a fresh session with a new CSRF token
    with httpx.Client(base_url=url, cookies=before, timeout=10) as old:
        assert old.get("/api/whoami").status_code == 401  # the cookie from before sign-in did not become signed in


def _signed_in_cookies(url: str, username: str) -> dict:
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as c:
        token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
        assert c.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token}).status_code == 303
        return dict(c.cookies)


def _whoami(url: str, cookies: dict) -> int:
    with httpx.Client(base_url=url, cookies=cookies, timeout=10) as c:
        return c.get("/api/whoami").status_code


def test_a_copied_cookie_ends_with_sign_out_reset_and_disabling(site):
    """Issue 20: sign-out, a password reset and disabling the account end every session of the account at once,
    a copy of the cookie included (it used to work for up to 8 h), and sessions of other accounts go on."""
    url, _clock, store = site
    other = _signed_in_cookies(url, "ther-b")
    # 1. sign-out: the browser signs out; a copy of its cookie (and a second device's session) stop working
    cookies, second_device = _signed_in_cookies(url, "ther-a"), _signed_in_cookies(url, "ther-a")
    copied = dict(cookies)
    assert _whoami(url, copied) == 200 and _whoami(url, second_device) == 200
    with httpx.Client(base_url=url, cookies=cookies, follow_redirects=False, timeout=10) as c:
        token = c.get("/api/whoami").json()["csrf_token"]
        assert c.post("/logout", data={"csrf_token": token}).status_code == 303
    assert _whoami(url, copied) == 401 and _whoami(url, second_device) == 401
    # 2. a password reset (kinetic provision therapist --reset): the old session ends, the new password works
    copied = _signed_in_cookies(url, "ther-a")
    provision_therapist(store, "ther-a", password=PASSWORD, reset=True)
    assert _whoami(url, copied) == 401
    # 3. disabling the account (kinetic dashboard disable-user); enabling it again does not revive the cookie
    copied = _signed_in_cookies(url, "ther-a")
    assert set_disabled(store, "ther-a", True)
    assert _whoami(url, copied) == 401
    assert set_disabled(store, "ther-a", False)
    assert _whoami(url, copied) == 401
    assert _whoami(url, _signed_in_cookies(url, "ther-a")) == 200  # signing in again works
    assert _whoami(url, other) == 200  # another account's session was never touched
