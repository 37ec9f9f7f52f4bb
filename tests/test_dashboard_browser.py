"""The dashboards in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): pages
load, charts draw with data, role rules, notes, downloads, the live view; and what a reader sees on them (item 5
of issue 20): distinct axis ticks, dates with their year, units on every axis, catalogue labels, a kPa colour
scale, the live insoles' battery and packet loss, the stride table, the typical-step gait line.

Site and browser: :mod:`tests.fixtures.browser`. Every page at both screen sizes, with screenshots:
``tests/test_dashboard_layout.py``.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import time
import zipfile
from datetime import date

import numpy as np
import pyarrow.parquet as pq
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from dashboards import data
from insole_common import metrics as C
from research.deid import Subject
from tests.fixtures import browser as fx
from tests.fixtures.browser import (
    INSOLE_STATUS,
    PHONE,
    click_and_load,
    live_walk,
    ready,
    reset_viewport,
    set_viewport,
    sign_in,
    wait,
)

#: the fixtures (requested by name): the app serving the fixture data, and Chromium
site, browser = fx.site, fx.browser


def test_therapist_list_patient_page_and_session(site, browser):
    url = site["url"]
    sign_in(browser, url, "ther-1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#patients tbody tr")
    assert [r.get_attribute("data-patient") for r in rows] == ["pat-a", "pat-b"]  # most urgent first; never pat-c
    assert "Left foot: lateral load higher than baseline" in rows[0].text  # in words (dashboards/flag_text.py)
    hub = rows[0].find_element(By.CSS_SELECTOR, "td.recording").text  # the hub in words (COLLECTOR_STATUS)
    assert "hub online · software 1.4.0 · 3 batches waiting to be sent · outbox 2 % full" in hub
    assert "Hub storage is full" in hub and "1 234 frames dropped by the hub since it started." in hub

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "pat-a"))
    charts = browser.find_elements(By.CSS_SELECTOR, "#trends svg.trend")
    assert len(charts) == 10  # lateral load, COP and heel load per foot, as the detector watches them
    for svg in charts:  # every chart drew its weekly line over the weeks, with baseline band and threshold
        assert int(svg.get_attribute("data-points")) == 7, svg.get_attribute("data-metric")  # 42 days touch 7 ISO weeks
        assert svg.find_elements(By.CSS_SELECTOR, "rect.baseline-band")
        assert len(svg.find_elements(By.CSS_SELECTOR, "line.threshold")) == 2
        assert len(svg.find_elements(By.CSS_SELECTOR, "circle.pt-day")) == 42
    lateral = browser.find_element(By.CSS_SELECTOR, "svg.trend[data-metric=lateral_load_fraction_L]")
    assert lateral.find_elements(By.CSS_SELECTOR, "rect.flag-week")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#flags .flag.raised")) >= 2
    assert "real-change threshold" in browser.find_element(By.ID, "flag-cards").text

    browser.find_element(By.ID, "note-text").send_keys("Try a softer heel cup <b>not bold</b>")
    click_and_load(browser, browser.find_element(By.ID, "note-add"))
    notes = browser.find_elements(By.CSS_SELECTOR, "#note-list li")
    assert "Try a softer heel cup <b>not bold</b>" in notes[0].text  # shown as text, never as markup

    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "#sessions tbody tr a"))  # newest: the simulated walk
    assert browser.current_url.endswith(site["created"]["simulated"]["pat-a"])
    feet = browser.find_elements(By.CSS_SELECTOR, "#feet svg.footmap")
    assert [f.get_attribute("data-side") for f in feet] == ["L", "R"]
    for f in feet:
        assert len(f.find_elements(By.CSS_SELECTOR, "rect.cell")) == 40 * 16
        assert len(f.find_elements(By.CSS_SELECTOR, "circle.sensor")) == 16
        assert f.find_elements(By.CSS_SELECTOR, "polyline.gait-typical")
        assert len(f.find_elements(By.CSS_SELECTOR, "polyline.gait-example")) == 8
    stored = site["store"].query("SELECT COUNT(*) AS n FROM strides WHERE session_id = ?",
                                 (site["created"]["simulated"]["pat-a"],)).iloc[0]["n"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#strides tbody tr")) == stored > 10


def test_role_rules_hold_in_the_browser(site, browser):
    url = site["url"]
    sign_in(browser, url, "ther-1")
    browser.get(url + "/therapist/patients/pat-c")  # ther-2's patient
    assert browser.find_element(By.ID, "error-status").text == "404"
    browser.get(url + "/research")
    assert browser.find_element(By.ID, "error-status").text == "403"
    browser.get(url + "/api/patients/pat-c/trends")
    assert "not found" in browser.page_source.lower() or "among yours" in browser.page_source
    browser.get(url + "/therapist")
    ready(browser)
    browser.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait(browser, lambda d: d.current_url.endswith("/login"))
    browser.get(url + "/therapist")
    assert "/login?next=/therapist" in browser.current_url
    # wrong password
    browser.find_element(By.ID, "username").send_keys("ther-1")
    browser.find_element(By.ID, "password").send_keys("wrong password!")
    # the refused sign-in answers after a deliberate delay: wait for that new page, then read it
    click_and_load(browser, browser.find_element(By.ID, "signin"))
    assert browser.find_element(By.ID, "login-error").text == "Wrong username or password."


def test_patient_page_is_plain(site, browser):
    url = site["url"]
    sign_in(browser, url, "patient-a")
    assert browser.current_url == url + "/me"
    status = browser.find_element(By.ID, "status").text
    assert status == "Your insoles are ready but not recording right now. They record when you walk."
    assert browser.find_element(By.ID, "recording").text == "Not recording right now."
    assert browser.find_element(By.ID, "battery-R").text == "Right insole battery: 15 % (low)"
    assert "right insole is low" in browser.find_element(By.ID, "battery").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#week-chart rect.bar")) == 7
    assert "steps" in browser.find_element(By.ID, "week-total").text
    trend = browser.find_element(By.ID, "trend").text
    assert "outside of your feet" in trend
    hub = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "#status-card p.hub-note")]  # COLLECTOR_STATUS
    assert hub[0] == "Home hub storage is full — recordings continue, but please free some space on the hub."
    assert "1 234 readings" in hub[1]
    page = browser.find_element(By.TAG_NAME, "main").text.lower()
    for jargon in ("cop", "lateral", "fraction", "baseline", "symmetry", "cadence", "flag"):
        assert jargon not in page.split(), jargon
    browser.get(url + "/therapist/patients/pat-a")
    assert browser.find_element(By.ID, "error-status").text == "403"


def test_researcher_filters_and_downloads(site, browser):
    url = site["url"]
    sign_in(browser, url, "res-1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#research-sessions tbody tr")
    assert len(rows) == 42 + 42 + 36
    assert "pat-" not in browser.page_source and "fx-" not in browser.page_source and "sim-" not in browser.page_source

    Select(browser.find_element(By.ID, "cohort")).select_by_value("control")
    # the researcher sees days shifted per subject: the last 7 real days of pat-c, shifted
    shift = int(site["store"].query("SELECT date_shift_days FROM research_subjects WHERE patient = 'pat-c'").iloc[0, 0])
    subject = Subject("x", "control", shift)
    lo, hi = subject.shift_day("2026-11-14"), subject.shift_day("2026-11-20")
    browser.execute_script(f"document.getElementById('from_day').value='{lo}';"
                           f"document.getElementById('to_day').value='{hi}';")
    browser.find_element(By.ID, "apply").click()
    ready(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#research-sessions tbody tr")
    assert len(rows) == 7 and all("control" in r.text for r in rows)

    last = rows[-1]  # 2026-11-20: the simulated walk with raw frames
    label = last.get_attribute("data-session")
    last.find_element(By.CSS_SELECTOR, "a.dl-csv").click()
    last.find_element(By.CSS_SELECTOR, "a.dl-parquet").click()
    csv_path, zip_path = browser.downloads / f"{label}_strides.csv", browser.downloads / f"{label}_parquet.zip"
    wait(browser, lambda d: csv_path.exists() and zip_path.exists() and not list(browser.downloads.glob("*.crdownload")))
    text = csv_path.read_text()
    assert text.startswith("subject,session,side,heel_strike_s,")
    assert len(text.splitlines()) > 10 and "pat-c" not in text and "sim-" not in text

    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert f"{label}/manifest.json" in names
        feet = [n for n in names if n.endswith("_samples.parquet")]
        assert len(feet) == 2
        for name in feet:
            table = pq.read_table(io.BytesIO(zf.read(name)))
            assert {"device_id", "seq", "t_us", "session_id"}.isdisjoint(table.column_names)
            assert table.num_rows == 2000  # 20 s at 100 Hz per foot
            assert b"pat-c" not in zf.read(name)


def test_live_view_updates_from_mqtt(site, browser):
    url, pub = site["url"], site["pub"]
    sign_in(browser, url, "ther-1")
    browser.get(url + "/therapist/live/pat-a")
    try:
        with live_walk(pub, "pat-a"):
            wait(browser, lambda d: d.execute_script("return document.body.dataset.liveSides") == "LR")
            first = int(browser.execute_script("return document.body.dataset.frames"))
            time.sleep(1.2)
            later = int(browser.execute_script("return document.body.dataset.frames"))
            assert later - first >= 3  # several frames a second
            feet = browser.execute_script(  # read in one go: the view redraws five times a second
                "return [...document.querySelectorAll('#feet svg.footmap')]"
                ".map(f => f.querySelectorAll('circle.cop-now').length)")
            assert feet == [1, 1]
            state = browser.execute_script("return document.getElementById('live-state').textContent")
            assert "hub online · hub storage full: recording to memory · 1234 frames dropped by the hub" in state
            scale = browser.execute_script(  # read in one go: the view redraws five times a second
                "const s = document.querySelector('#feet svg.colour-scale');"
                "return [s.dataset.unit, [...s.querySelectorAll('text.tick')].map(t => t.textContent)]")
            assert scale[0] == "kPa" and len(scale[1]) >= 3
            insoles = dict(browser.execute_script(  # read in one go: redrawn five times a second
                "return [...document.querySelectorAll('#insoles li')].map(li => [li.dataset.side, li.textContent])"))
            for side, status in INSOLE_STATUS.items():  # battery and frame loss of the collector's InsoleStatus
                assert f"battery {status['battery_pct']:.0f} %" in insoles[side]
                assert f"{100 * status['loss_fraction']:.1f} % of frames lost" in insoles[side]
    finally:
        browser.get(url + "/therapist")  # closes the event stream


def test_api_docs_page(site, browser):
    sign_in(browser, site["url"], "ther-1")
    browser.get(site["url"] + "/api/docs")
    rows = browser.find_elements(By.CSS_SELECTOR, "#operations tbody tr")
    assert len(rows) >= 15
    assert "therapist (assigned patients only)" in browser.find_element(By.ID, "operations").text


# what a reader sees (issue 20, item 5) -------------------------------------------------------------------
#: a date tick: "16 Nov", or "16 Nov 2026" where the year is needed
DATE_TICK = re.compile(r"^\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)( \d{4})?$")


def tick_texts(element, selector):
    return [t.get_attribute("textContent") for t in element.find_elements(By.CSS_SELECTOR, selector)]


def test_trend_charts_read_plainly(site, browser):
    """Distinct y ticks, the unit on both axes, dated week ticks with their year, the catalogue's labels and
    the latest weekly value titled with its week."""
    sign_in(browser, site["url"], "ther-1")
    browser.get(site["url"] + "/therapist/patients/pat-a")
    ready(browser)
    trends = {m["key"]: m for m in data.trends(site["store"], "pat-a")["metrics"]}
    charts = browser.find_elements(By.CSS_SELECTOR, "#trends .chart")
    assert len(charts) == len(trends) == 10
    for chart in charts:
        m = trends[chart.get_attribute("data-metric")]  # a series: per foot for the metrics watched per foot
        svg = chart.find_element(By.CSS_SELECTOR, "svg.trend")
        ys = tick_texts(svg, "text.tick-y")
        assert len(ys) >= 3 and len(set(ys)) == len(ys), (m["key"], ys)  # e.g. not "108 / 108"
        values = [float(v) for v in ys]
        assert values == sorted(values)  # drawn bottom to top
        assert tick_texts(svg, "text.axis-y") == [m["unit"]]
        assert tick_texts(svg, "text.axis-x") == ["week starting (Monday)"]
        xs = tick_texts(svg, "text.tick-x")
        assert len(xs) >= 3 and all(DATE_TICK.match(x) for x in xs), xs
        assert xs[0].endswith(m["weekly"][0]["week"][:4])  # the first date carries its year
        heading = chart.find_element(By.TAG_NAME, "h3").text
        assert heading.startswith(m["label"]) and m["label"].startswith(C.BY_KEY[m["metric"]].label)
        assert "last week" not in heading
        latest = [w for w in m["weekly"] if w["value"] is not None][-1]
        assert latest["week"] == "2026-11-16"
        assert f"latest: {latest['value']:.{m['decimals']}f} {m['unit']}, week of 16 Nov 2026" in heading
        assert "_" not in chart.text  # no raw keys such as cop_ml_mean_fw


def test_session_page_reads_plainly(site, browser):
    """The stride table speaks the catalogue (labels, units, decimals; loads as sums of sensor pressures) and is
    not cut off; the pressure maps have a kPa colour scale; the typical step starts at the heel, without a
    stray stroke."""
    sign_in(browser, site["url"], "ther-1")
    browser.get(site["url"] + "/therapist/sessions/" + site["created"]["simulated"]["pat-a"])
    ready(browser)
    heads = {th.get_attribute("data-key"): th.text for th in browser.find_elements(By.CSS_SELECTOR, "#strides thead th")}
    assert C.PEAK_HEEL_LOAD in heads and C.COP_ML_MEAN_FW in heads
    for key, text in heads.items():
        assert "_" not in text, text
        if key in C.BY_KEY:
            label, _, unit = text.partition("\n")
            assert (label, unit) == (C.BY_KEY[key].label, C.BY_KEY[key].unit)
    assert heads[C.PEAK_HEEL_LOAD] == "Peak heel load\nsum of sensor pressures"  # not kPa: a sum over sensors
    box = browser.find_element(By.CSS_SELECTOR, "#strides").find_element(By.XPATH, "..")
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", box)

    scale = browser.find_element(By.CSS_SELECTOR, "#feet svg.colour-scale")
    assert scale.get_attribute("data-unit") == "kPa" and "kPa" in scale.text
    ticks = [float(t) for t in tick_texts(scale, "text.tick")]
    assert len(ticks) >= 3 and ticks[0] == 0 and ticks == sorted(set(ticks))
    assert ticks[-1] <= float(scale.get_attribute("data-vmax"))

    for foot in browser.find_elements(By.CSS_SELECTOR, "#feet svg.footmap"):
        pts = np.array([[float(v) for v in p.split(",")]
                        for p in foot.find_element(By.CSS_SELECTOR, "polyline.gait-typical").get_attribute("points").split()])
        steps = np.hypot(*np.diff(pts, axis=0).T)
        assert steps[0] <= 3 * np.median(steps), (foot.get_attribute("data-side"), steps[:3], np.median(steps))
        assert pts[0, 1] > pts[-1, 1]  # from the heel (bottom) to the toe


def test_patient_week_chart_reads_plainly(site, browser):
    sign_in(browser, site["url"], "patient-a")
    svg = browser.find_element(By.CSS_SELECTOR, "#week-chart svg.bars")
    assert tick_texts(svg, "text.axis-y") == ["steps"]
    assert tick_texts(svg, "text.tick-x") == ["Sat 14", "Sun 15", "Mon 16", "Tue 17", "Wed 18", "Thu 19", "Fri 20"]
    assert tick_texts(svg, "text.axis-x") == ["day, 14 Nov – 20 Nov 2026"]


# flag cards with their evidence chart (item 3) and the digest printed to PDF (item 2) ----------------------------
def test_every_flag_card_shows_its_evidence_chart(site, browser):
    """Beside each active flag's words: the weekly chart of its series with the stored baseline band, the
    real-change threshold and the flagged span (every week from the first raise to the latest, still open)."""
    sign_in(browser, site["url"], "ther-1")
    trends = {m["key"]: m for m in data.trends(site["store"], "pat-a")["metrics"]}
    try:
        for size in (None, PHONE):
            if size:
                set_viewport(browser, size)
            browser.get(site["url"] + "/therapist/patients/pat-a")
            ready(browser)
            cards = browser.find_elements(By.CSS_SELECTOR, "#flag-cards article.flag-card")
            assert len(cards) >= 2
            for card in cards:
                series = card.get_attribute("data-series")
                svg = card.find_element(By.CSS_SELECTOR, ".evidence-chart svg.trend")
                assert svg.get_attribute("data-metric") == series and int(svg.get_attribute("data-points")) == 7
                assert svg.find_elements(By.CSS_SELECTOR, "rect.baseline-band")
                assert len(svg.find_elements(By.CSS_SELECTOR, "line.threshold")) == 2
                assert trends[series]["flag_spans"][-1]["active"]  # still open: shaded up to the latest week
                flagged_weeks = {date.fromisocalendar(*date.fromisoformat(d).isocalendar()[:2], 1)
                                 for d in trends[series]["flag_days"]}
                assert len(svg.find_elements(By.CSS_SELECTOR, "rect.flag-week")) == len(flagged_weeks) >= 2
                words, chart = card.find_element(By.CSS_SELECTOR, ".flag-words").rect, svg.rect
                if size is None:  # beside the words on a desktop, below them on a phone; never off the screen
                    assert chart["x"] >= words["x"] + words["width"] and chart["y"] < words["y"] + words["height"]
                else:
                    assert chart["y"] >= words["y"] + words["height"] and chart["x"] + chart["width"] <= PHONE[0]
    finally:
        reset_viewport(browser)


def test_digest_prints_to_pdf_with_its_numbers(site, browser):
    """The weekly digest printed by Chromium (DevTools Page.printToPDF, what "Save as PDF" does): the PDF holds
    the page's numbers and leaves out the navigation, the hint and the forms (print CSS)."""
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (Debian package poppler-utils) is needed to read the printed digest"
    sign_in(browser, site["url"], "ther-1")
    browser.get(site["url"] + "/therapist/patients/pat-a/digest")
    ready(browser)
    numbers = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".digest-series td.num") if e.text != "–"]
    steps = browser.find_element(By.CSS_SELECTOR, ".digest-facts td.steps").text
    flags = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".digest-flags li")]
    assert len(numbers) >= 20 and flags and "Sign out" in browser.find_element(By.TAG_NAME, "body").text
    pdf = base64.b64decode(browser.execute_cdp_cmd("Page.printToPDF", {"printBackground": True})["data"])
    assert pdf.startswith(b"%PDF-")
    path = site["tmp"] / "digest.pdf"
    path.write_bytes(pdf)
    text = " ".join(subprocess.run([pdftotext, "-layout", str(path), "-"], check=True, capture_output=True,
                                   text=True, timeout=60).stdout.split())
    assert "Weekly digest: pat-a" in text and steps in text
    for value in numbers:  # a cell may wrap between its number and its unit in the PDF
        assert re.search(rf"(^| ){re.escape(value.split()[0])}( |$)", text), value
    for sentence in flags:  # wrapped across lines in the PDF: compare the words
        assert " ".join(sentence.split()[:6]) in text, sentence
    for screen_only in ("Sign out", "My patients", "Save as PDF", "Kinetic Chain"):
        assert screen_only not in text, screen_only
