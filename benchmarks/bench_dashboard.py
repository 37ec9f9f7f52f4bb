"""Benchmark: the therapist's patient page over a year of data, server time.

A SQLite store gets three patients x ``--days`` days of sessions (``--strides`` strides per
side each, daily summaries computed by the processing service's own code), baselines, flags
and ~100 notes. The app is served by uvicorn in a thread; the page is its HTML shell plus the
five API calls its script makes. Server time is read from the ``Server-Timing`` header (from
the request entering the app to the response leaving it); client time is wall time over
loopback. Target (issue 6): the page under 300 ms server time.

    .venv/bin/python benchmarks/bench_dashboard.py [--days 365] [--strides 100] [--repeat 20]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx

from dashboards.app import create_app
from storage.store import SQLiteStore
from tests.fixtures.dashboard import FIXTURE_PASSWORD, ServerThread, build_fixture

TODAY = date(2026, 11, 20)
PATIENT = "pat-a"
PAGE = [f"/therapist/patients/{PATIENT}", f"/api/patients/{PATIENT}", f"/api/patients/{PATIENT}/trends",
        f"/api/patients/{PATIENT}/flags", f"/api/patients/{PATIENT}/notes",
        f"/api/patients/{PATIENT}/sessions?limit=20"]


def server_ms(r: httpx.Response) -> float:
    return float(re.search(r"dur=([\d.]+)", r.headers["server-timing"]).group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--strides", type=int, default=100, help="strides per side per session")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "kinetic.sqlite")
        t0 = time.perf_counter()
        build_fixture(store, today=TODAY, days=args.days, strides_per_session=args.strides, simulated_walk_s=None)
        with store.transaction():
            for k in range(100):
                store.execute("INSERT INTO notes (patient, author, time_us, text) VALUES (?, ?, ?, ?)",
                              (PATIENT, "ther-1", 1_780_000_000_000_000 + k * 86_400_000_000, f"note {k} " + "x" * 200))
        counts = {t: int(store.query(f"SELECT COUNT(*) AS n FROM {t}").iloc[0]["n"])  # noqa: S608 - names below
                  for t in ("sessions", "strides", "daily_summaries", "flags", "notes")}
        print(f"fixture: {counts} in {time.perf_counter() - t0:.1f} s")
        app = create_app(store, secret="b" * 48, today=lambda: TODAY)
        with ServerThread(app) as server, httpx.Client(base_url=server.url) as c:
            token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
            c.post("/login", data={"username": "ther-1", "password": FIXTURE_PASSWORD, "csrf_token": token})
            for url in PAGE:  # warm up
                assert c.get(url).status_code == 200, url
            per_url = {u: [] for u in PAGE}
            totals, walls = [], []
            for _ in range(args.repeat):
                total, w0 = 0.0, time.perf_counter()
                for url in PAGE:
                    r = c.get(url)
                    ms = server_ms(r)
                    per_url[url].append(ms)
                    total += ms
                walls.append((time.perf_counter() - w0) * 1000)
                totals.append(total)
        store.close()
    print(f"\npatient page over {args.days} days ({args.repeat} runs), server time in ms (median / max):")
    for url, v in per_url.items():
        print(f"  {url:<45} {statistics.median(v):7.1f} {max(v):7.1f}")
    med, worst = statistics.median(totals), max(totals)
    print(f"  {'whole page (sum, sequential)':<45} {med:7.1f} {worst:7.1f}   "
          f"client wall time median {statistics.median(walls):.1f}")
    ok = med < 300
    print("OK: under 300 ms" if ok else "SLOW: over 300 ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
