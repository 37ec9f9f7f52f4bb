"""The dashboards in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): pages
load, charts draw with data, role rules, notes, downloads, the live view; and what a reader sees on them (item 5
of issue 20): distinct axis ticks, dates with their year, units on every axis, catalogue labels, a kPa colour
scale, the live insoles' battery and packet loss, the stride table, the typical-step gait line.

Site and browser: :mod:`tests.fixtures.browser`. Every page at both screen sizes, with screenshots:
``tests/test_dashboard_layout.py``.
"""

from __future__ import annotations

import io
import time
import zipfile

import pyarrow.parquet as pq
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from research.deid import Subject
from tests.fixtures import browser as fx
from tests.fixtures.browser import click_and_load, live_walk, ready, sign_in, wait

#: the fixtures (requested by name): the app serving the fixture data, and Chromium
site, browser = fx.site, fx.browser


def test_therapist_list_patient_page_and_session(site, browser):
    url = site["url"]
    sign_in(browser, url, "ther-1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#patients tbody tr")
    assert [r.get_attribute("data-patient") for r in rows] == ["pat-a", "pat-b"]  # flagged first; never pat-c
    assert "Lateral load raised" in rows[0].text

    click_and_load(browser, browser.find_element(By.LINK_TEXT, "pat-a"))
    charts = browser.find_elements(By.CSS_SELECTOR, "#trends svg.trend")
    assert len(charts) == 7
    for svg in charts:  # every chart drew its weekly line over the weeks, with baseline band and threshold
        assert int(svg.get_attribute("data-points")) == 7, svg.get_attribute("data-metric")  # 42 days touch 7 ISO weeks
        assert svg.find_elements(By.CSS_SELECTOR, "rect.baseline-band")
        assert len(svg.find_elements(By.CSS_SELECTOR, "line.threshold")) == 2
        assert len(svg.find_elements(By.CSS_SELECTOR, "circle.pt-day")) == 42
    lateral = browser.find_element(By.CSS_SELECTOR, "svg.trend[data-metric=lateral_load_fraction]")
    assert lateral.find_elements(By.CSS_SELECTOR, "rect.flag-week")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#flags .flag.raised")) >= 2
    assert "real-change threshold" in browser.find_element(By.ID, "flags").text

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
    assert status == "Your insoles are connected. They will record when you walk."
    assert "right insole is low" in browser.find_element(By.ID, "battery").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#week-chart rect.bar")) == 7
    assert "steps" in browser.find_element(By.ID, "week-total").text
    trend = browser.find_element(By.ID, "trend").text
    assert "outside of your feet" in trend
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
            feet = browser.find_elements(By.CSS_SELECTOR, "#feet svg.footmap")
            assert len(feet) == 2 and all(f.find_elements(By.CSS_SELECTOR, "circle.cop-now") for f in feet)
            assert "hub online" in browser.find_element(By.ID, "live-state").text
    finally:
        browser.get(url + "/therapist")  # closes the event stream


def test_api_docs_page(site, browser):
    sign_in(browser, site["url"], "ther-1")
    browser.get(site["url"] + "/api/docs")
    rows = browser.find_elements(By.CSS_SELECTOR, "#operations tbody tr")
    assert len(rows) >= 15
    assert "therapist (assigned patients only)" in browser.find_element(By.ID, "operations").text
