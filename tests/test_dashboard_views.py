"""Issue 20, items 1-4 and 7: who needs attention and why. The therapist overview (active flags in words, urgency,
recording, battery, last walk, wearing time against the week before), the weekly digest (the pages' numbers),
flag cards and their acknowledgement, per-side trend series with the stored band and the flagged span, and the
patient home (recording as the API says it, battery per insole, last walk, feedback only where a flag backs it).

The app runs in uvicorn over a SQLite store of its own (:func:`tests.fixtures.dashboard.build_fixture`); the
collector status is fed to the app's :class:`dashboards.live.LiveFeed` through its ``handle`` method.
"""

from __future__ import annotations

import html
import json
import re
from contextlib import closing
from datetime import date, timedelta

import httpx
import pytest

from dashboards import data, flag_text, overview
from dashboards.app import create_app
from dashboards.live import LiveFeed
from insole_common import topics
from insole_common.messages import CollectorStatus, InsoleStatus
from insole_common.metrics import CATALOGUE
from storage.flags import active_flags, baselines as stored_baselines, flags as stored_flag_events, save_detection
from storage.store import SQLiteStore
from tests.fixtures.dashboard import FIXTURE_PASSWORD, ServerThread, build_fixture, fixture_flag

TODAY = date(2026, 11, 20)
NOW_US = 1_795_000_000_000_000
SINCE = (TODAY - timedelta(days=9)).isoformat()  # the fixture's flags are open since then


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    store = SQLiteStore(tmp_path_factory.mktemp("views") / "kinetic.sqlite")
    build_fixture(store, today=TODAY, days=28, strides_per_session=10, simulated_walk_s=None)
    feed = LiveFeed()
    feed.connected = True
    for topic, msg in ((topics.collector_status_topic("pat-a"), CollectorStatus(online=True, time_us=NOW_US)),
                       (topics.insole_status_topic("pat-a", "L"),
                        InsoleStatus(side="L", connected=True, time_us=NOW_US, battery_pct=81)),
                       (topics.insole_status_topic("pat-a", "R"),
                        InsoleStatus(side="R", connected=True, time_us=NOW_US, battery_pct=15))):
        feed.handle(topic, msg.to_json())
    app = create_app(store, secret="v" * 48, feed=feed, today=lambda: TODAY, now_us=lambda: NOW_US)
    with ServerThread(app) as server:
        yield {"url": server.url, "store": store, "feed": feed}
    store.close()


def client(site, username: str) -> httpx.Client:
    c = httpx.Client(base_url=site["url"], follow_redirects=False, timeout=20)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
    r = c.post("/login", data={"username": username, "password": FIXTURE_PASSWORD, "csrf_token": token, "next": "/"})
    assert r.status_code == 303, r.text
    return c


def text_of(page: str) -> str:
    """A page's visible text, roughly: tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


# 1. the therapist overview -----------------------------------------------------------------------------
def test_overview_shows_every_active_flag_in_words_and_the_patients_state(site):
    with closing(client(site, "ther-1")) as c:
        api = c.get("/api/therapist/patients").json()["patients"]
        page = c.get("/therapist").text
    rows = {p["patient"]: p for p in api}
    for patient in ("pat-a", "pat-b"):
        listed = {f["series"] for f in rows[patient]["flags"]}
        assert listed == {f["metric"] for f in active_flags(site["store"], [patient])} != set()
        for f in rows[patient]["flags"]:
            assert f["since_day"] == SINCE and "since 11 Nov 2026" in f["sentence"]
            assert f["change"]["delta"] is not None and f["change_text"]  # plain units (and per cent where it means something)
            assert f["sentence"] in text_of(page)
    lateral = next(f for f in rows["pat-a"]["flags"] if f["series"] == "lateral_load_fraction_L")
    assert lateral["side"] == "L" and lateral["sentence"].startswith("Left foot: weight moved to the outside since ")
    assert re.search(r"lateral load \d\d\.\d % of load against \d\d\.\d % of load at baseline \(\+\d\.\d points, \+\d+\.\d %\)",
                     lateral["sentence"])
    a = rows["pat-a"]
    assert a["recording"] is False and a["recording_text"] == "not recording"
    assert (a["battery"]["L"]["text"], a["battery"]["R"]["text"]) == ("81 %", "15 % (low)")
    assert rows["pat-b"]["battery"]["L"]["text"] == "unknown"  # no status from pat-b's collector
    assert a["last_walk"]["day"] == TODAY.isoformat() and a["last_walk"]["day_text"] == "20 Nov 2026"
    assert a["wearing_h"] > 0 and a["wearing_h_last_week"] > 0
    assert {"key": "online", "value": True, "text": "hub online"} in a["collector"]
    # the page says the same
    row_a = page[page.index('data-patient="pat-a"'):page.index('data-patient="pat-b"')]
    assert "left 81 %, right 15 % (low)" in text_of(row_a) and "20 Nov 2026" in row_a and "the week before" in row_a


def test_patients_are_ordered_by_urgency(site):
    with closing(client(site, "ther-1")) as c:
        rows = c.get("/api/therapist/patients").json()["patients"]
    # both flagged: the one whose furthest flag is furthest beyond its threshold first
    assert [r["patient"] for r in rows] == sorted(("pat-a", "pat-b"), key=lambda p: -next(
        r["beyond"] for r in rows if r["patient"] == p))
    assert rows[0]["beyond"] >= rows[1]["beyond"] > 1 and rows[0]["urgency"]["rank"] == 1
    assert "active flag" in rows[0]["urgency"]["reason"] and "threshold" in rows[0]["urgency"]["reason"]
    # without flags: the longest without a walk first
    walked = {"patient": "x", "raised_n": 0, "beyond": None, "last_walk": {"days_ago": 1}}
    idle = {**walked, "patient": "y", "last_walk": {"days_ago": 6}}
    never = {**walked, "patient": "z", "last_walk": None}
    flagged = {**walked, "patient": "w", "raised_n": 1, "beyond": 1.2}
    assert [r["patient"] for r in sorted([walked, idle, never, flagged], key=overview.urgency_key)] == ["w", "z", "y", "x"]
    assert overview.urgency_reason(idle) == "last walk 6 days ago"


# 2. the weekly digest ------------------------------------------------------------------------------------
def test_digest_has_the_numbers_of_the_pages(site):
    with closing(client(site, "ther-1")) as c:
        listing = {p["patient"]: p for p in c.get("/api/therapist/patients").json()["patients"]}
        whole = c.get("/api/therapist/digest").json()
        one = c.get("/api/patients/pat-a/digest").json()
        trends = {m["key"]: m for m in c.get("/api/patients/pat-a/trends").json()["metrics"]}
        page = c.get("/therapist/digest")
        own = c.get("/therapist/patients/pat-a/digest")
    assert page.status_code == own.status_code == 200
    assert [p["patient"] for p in whole["patients"]] == list(listing)  # the overview's order
    for d in whole["patients"]:
        row = listing[d["patient"]]
        assert (d["wearing_h"], d["wearing_h_last_week"], d["steps_week"]) == \
            (row["wearing_h"], row["wearing_h_last_week"], row["steps_week"])
        assert [f["sentence"] for f in d["row"]["flags"]] == [f["sentence"] for f in row["flags"]]
        for f in row["flags"]:
            assert f["sentence"] in text_of(page.text)
    assert one["series"] == next(d for d in whole["patients"] if d["patient"] == "pat-a")["series"]
    for s in one["series"]:  # the chart's last weekly point and the stored baseline
        m = trends[s["series"]]
        assert s["value"] == [w["value"] for w in m["weekly"] if w["value"] is not None][-1]
        assert s["baseline"] == m["baseline"]["mean"]
        assert s["value_text"] in text_of(own.text)
    assert any(s["beyond_threshold"] for s in one["series"])
    assert one["events"] and all(e["day"] >= one["week_from"] for e in one["events"])
    assert re.search(r'class="[^"]*no-print', own.text)  # what print leaves out (navigation, the hint)


# 3. flag cards in words, acknowledgement ------------------------------------------------------------------
def test_a_flag_in_clinical_words():
    flag = {"kind": "lateral_shift", "metric": "lateral_load_fraction_L", "side": "L", "direction": "up",
            "since_day": "2026-11-14", "day": "2026-11-18", "baseline": 0.52, "current": 0.58, "threshold": 0.018}
    assert flag_text.sentence(flag) == (
        "Left foot: weight moved to the outside since 14 Nov 2026: lateral load 58.0 % of load against 52.0 % of "
        "load at baseline (+6.0 points, +11.5 %); real-change threshold 1.8 % of load.")
    assert flag_text.event_words({"metric": "stride_time_s", "state": "raised", "evidence": {"direction": "up"}}) == \
        "flag raised: stride time longer than baseline"
    assert flag_text.event_words({"metric": "stride_length_m", "state": "improved", "direction": "down"}) == \
        "improving, still flagged: stride length shorter than baseline"
    assert flag_text.display("peak_load_L").unit == flag_text.display("peak_heel_load").unit == "sum of sensor pressures"
    # a metric the catalogue does not know yet is still worded
    assert flag_text.sentence({**flag, "metric": "si_peak_load", "side": None, "kind": "limp"}).startswith(
        "Both feet: limp, less time on this foot since 14 Nov 2026: peak load symmetry (L−R) 0.6 % against 0.5 % ")


def state_word_collisions(words: str) -> list[str]:
    """Places where a state word follows a metric's label as if it were its direction ("Stride time raised")."""
    labels = "|".join(re.escape(m.label) for m in CATALOGUE)
    return re.findall(rf"(?:{labels})(?:, (?:left|right) foot)? (?:raised|improved|cleared)", words, flags=re.I)


def test_flag_cards_on_the_patients_page(site):
    with closing(client(site, "ther-1")) as c:
        page = c.get("/therapist/patients/pat-a").text
        api = c.get("/api/patients/pat-a/flags").json()
    open_series = {f["metric"] for f in active_flags(site["store"], ["pat-a"])}
    cards = re.findall(r'<article class="flag-card" id="flag-([^"]+)"', page)
    assert set(cards) == open_series and len(cards) == len(open_series)
    for card in api["active"]:
        block = page[page.index(f'id="flag-{card["series"]}"'):]
        block = block[:block.index("</article>")]
        assert card["headline"] in block and html.escape(card["sentence"]) in block
        assert "<details" in block and "<summary>" in block  # raw evidence behind a details control
        assert f'class="evidence-chart" data-series="{card["series"]}"' in block  # the evidence chart's place
        assert "/acknowledge" in block and 'name="csrf_token"' in block
    assert not state_word_collisions(text_of(page))
    assert not state_word_collisions(json.dumps(api))
    # numbers rounded: no float with more than the catalogue's decimals + 3 digits anywhere in the flags API
    assert not re.search(r"\d\.\d{7,}", json.dumps(api))


def test_a_therapist_acknowledges_a_flag_with_a_note(site):
    store = site["store"]
    with closing(client(site, "ther-1")) as c:
        page = c.get("/therapist/patients/pat-a").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        url = "/therapist/patients/pat-a/flags/lateral_load_fraction_R/acknowledge"
        assert c.post(url, data={"text": "seen"}).status_code == 403  # no CSRF token
        r = c.post(url, data={"text": "Discussed insoles <b>with lateral wedge</b>", "csrf_token": token})
        assert r.status_code == 303 and r.headers["location"].endswith("#flag-lateral_load_fraction_R")
        assert c.post("/therapist/patients/pat-a/flags/no_such_series/acknowledge",
                      data={"csrf_token": token}).status_code == 404
        api = c.post("/api/patients/pat-a/flags/heel_load_fraction_L/acknowledge", json={},
                     headers={"X-CSRF-Token": token})
        assert api.status_code == 201
        # detection runs again and rewrites the flag rows: the acknowledgement stays with the flag
        save_detection(store, "pat-a", [{k: v for k, v in f.items() if k != "id"} | {"patient": "pat-a"}
                                        for f in _flag_rows(store, "pat-a")], [], keep_auto_baselines=True)
        page = c.get("/therapist/patients/pat-a").text
        cards = {f["series"]: f for f in c.get("/api/patients/pat-a/flags").json()["active"]}
    assert cards["lateral_load_fraction_R"]["acknowledged"] and cards["heel_load_fraction_L"]["acknowledged"]
    assert not cards["lateral_load_fraction_L"]["acknowledged"]
    (ack,) = cards["lateral_load_fraction_R"]["acknowledgements"]
    assert (ack["author"], ack["note"]) == ("ther-1", "Discussed insoles <b>with lateral wedge</b>")
    assert "Discussed insoles &lt;b&gt;with lateral wedge&lt;/b&gt;" in page  # text, never markup
    with closing(client(site, "ther-2")) as other:  # not their patient
        token = re.search(r'name="csrf_token" value="([^"]+)"', other.get("/therapist").text).group(1)
        assert other.post("/therapist/patients/pat-a/flags/lateral_load_fraction_L/acknowledge",
                          data={"csrf_token": token}).status_code == 404


def _flag_rows(store, patient: str) -> list[dict]:
    """The stored flag rows of ``patient`` as :func:`storage.flags.save_detection` takes them."""
    out = []
    for f in stored_flag_events(store, patient):
        row = {k: f[k] for k in ("kind", "metric", "state", "day", "baseline", "current", "threshold", "effect_size",
                                 "days_n", "created_us", "since_day", "cleared_day")}
        out.append({**row, "evidence_json": json.dumps(f["evidence"]), "active": int(f["active"])})
    return out


# 4. watched series: band, threshold, flagged span until cleared --------------------------------------------
def test_every_watched_series_has_its_band_threshold_and_flagged_span(site):
    store = site["store"]
    with closing(client(site, "ther-1")) as c:
        trends = {m["key"]: m for m in c.get("/api/patients/pat-a/trends").json()["metrics"]}
    stored = stored_baselines(store, "pat-a")
    for metric in ("lateral_load_fraction", "cop_ml_mean_fw", "heel_load_fraction"):
        assert metric not in trends  # the detector watches these per side: so do the charts
        for side, word in (("L", "left"), ("R", "right")):
            m = trends[f"{metric}_{side}"]
            assert m["side"] == side and m["label"].endswith(f", {word} foot")
            assert len([w for w in m["weekly"] if w["value"] is not None]) >= 4 and m["daily"]
    for key, m in trends.items():  # every chart: the stored band and threshold
        b = stored[key]
        shown = flag_text.display(key)  # rounded to the catalogue's decimals + 1
        assert (m["baseline"]["band_low"], m["baseline"]["band_high"], m["threshold"]) == \
            (shown.stored(b["band_low"]), shown.stored(b["band_high"]), shown.stored(b["threshold"])) != (None,) * 3
    flagged = {f["metric"] for f in active_flags(store, ["pat-a"])}
    for key in flagged:  # shaded from the first raise until today (not cleared), not only the latest week
        assert trends[key]["flag_spans"] == [{"from": SINCE, "to": TODAY.isoformat(), "active": True}]
        assert trends[key]["flag_days"][0] == SINCE and len(trends[key]["flag_days"]) == 10
    assert all(not trends[k]["flag_spans"] for k in set(trends) - flagged)


def test_a_cleared_flag_is_shaded_until_its_clearing(tmp_path):
    store = SQLiteStore(tmp_path / "k.sqlite")
    build_fixture(store, today=TODAY, days=14, strides_per_session=6, simulated_walk_s=None, accounts=False)
    rows = [fixture_flag("pat-c", "heel_load_fraction_R", "2026-11-10", 1, active=False, cleared_day="2026-11-15",
                         kind="heel_offloading"),
            {**fixture_flag("pat-c", "heel_load_fraction_R", "2026-11-15", 1, active=False), "state": "cleared"}]
    save_detection(store, "pat-c", rows, [], keep_auto_baselines=True)
    m = next(m for m in data.trends(store, "pat-c")["metrics"] if m["key"] == "heel_load_fraction_R")
    assert m["flag_spans"] == [{"from": "2026-11-10", "to": "2026-11-15", "active": False}]
    store.close()


# 7. the patient home -----------------------------------------------------------------------------------------
def test_patient_home_says_what_its_api_says(site):
    with closing(client(site, "patient-a")) as c:
        api = c.get("/api/me/overview").json()
        page = c.get("/me").text
    status = api["status"]
    assert status["recording"] is False and status["recording_text"] == "Not recording right now."
    assert "not recording" in status["headline"]  # never just "connected" while the API says recording: false
    words = text_of(page)
    assert status["headline"] in words and "Not recording right now." in words
    assert "Left insole battery: 81 %" in words and "Right insole battery: 15 % (low)" in words
    assert api["last_walk"]["day"] == TODAY.isoformat() and "Your last walk: 20 Nov 2026" in words


def test_patient_feedback_only_where_an_active_flag_backs_it(site, tmp_path):
    store = SQLiteStore(tmp_path / "k.sqlite")
    build_fixture(store, today=TODAY, days=28, strides_per_session=10, simulated_walk_s=None, accounts=False)
    flagged = " ".join(data.plain_trend(store, "pat-a", TODAY))
    assert "outside of your feet: more than usual" in flagged and "heels: less than usual" in flagged
    # the same walking and baselines, but the flags cleared: nothing to tell the patient
    save_detection(store, "pat-a", [], [], keep_auto_baselines=True)
    assert data.plain_trend(store, "pat-a", TODAY) == ["Your walking this week looks like your usual walking. Keep going!"]
    # one flag of a metric without words for patients (COP): not mentioned either
    save_detection(store, "pat-a", [fixture_flag("pat-a", "cop_ml_mean_fw_L", "2026-11-18", 1)], [],
                   keep_auto_baselines=True)
    assert data.plain_trend(store, "pat-a", TODAY) == ["Your walking this week looks like your usual walking. Keep going!"]
    store.close()


# the home hub's state in words (CollectorStatus: storage_full, dropped_frames_n) -------------------------------
def test_hub_status_in_words_with_a_full_disk_and_dropped_frames(site):
    topic, feed = topics.collector_status_topic("pat-a"), site["feed"]
    feed.handle(topic, CollectorStatus(online=True, time_us=NOW_US, software="1.4.0", outbox_batches_n=3,
                                       outbox_fill_fraction=0.12, storage_full=True, dropped_frames_n=1234).to_json())
    try:
        with closing(client(site, "ther-1")) as c:
            row = next(p for p in c.get("/api/therapist/patients").json()["patients"] if p["patient"] == "pat-a")
            listing, own, digest_page = c.get("/therapist").text, c.get("/therapist/patients/pat-a").text, \
                c.get("/therapist/patients/pat-a/digest").text
        with closing(client(site, "patient-a")) as c:
            me_api, me_page = c.get("/api/me/overview").json(), text_of(c.get("/me").text)
    finally:
        feed.handle(topic, CollectorStatus(online=True, time_us=NOW_US).to_json())
    hub = row["hub"]
    assert hub["text"] == ("hub online · software 1.4.0 · 3 batches waiting to be sent · outbox 12 % full · "
                           "storage full: recording to memory · 1\u00a0234 frames dropped since it started")
    assert hub["storage_full"] is True and hub["dropped_frames_n"] == 1234
    warning = "Hub storage is full: recordings continue in memory, but space must be freed on the hub."
    assert hub["warnings"] == [warning, "1\u00a0234 frames dropped by the hub since it started."]
    row_a = text_of(listing[listing.index('data-patient="pat-a"'):listing.index('data-patient="pat-b"')])
    for page in (row_a, text_of(own), text_of(digest_page)):
        # text_of folds the no-break space that keeps "1 234" on one line
        assert hub["text"].replace("\u00a0", " ") in page and warning in page and "1 234 frames dropped by the hub" in page
        assert "fill fraction" not in page and "outbox batches n" not in page  # words, not field names
    note = "Home hub storage is full — recordings continue, but please free some space on the hub."
    assert me_api["status"]["hub_notes"][0] == note and note in me_page and "1 234 readings" in me_page
    # unknown fields are left out, not shown as "–"
    with closing(client(site, "ther-1")) as c:
        plain = next(p for p in c.get("/api/therapist/patients").json()["patients"] if p["patient"] == "pat-a")
    assert plain["hub"] == {**plain["hub"], "text": "hub online", "warnings": []}
    assert overview.hub_status({})["text"] == "hub status unknown"
    assert overview.hub_status({"collector": {"online": False}})["warnings"][0].startswith("Hub offline")
