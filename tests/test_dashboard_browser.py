"""The dashboards in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

The app runs in-process (uvicorn in a thread, 127.0.0.1, free port) over a SQLite store filled by
:func:`tests.fixtures.dashboard.build_fixture`; status and live frames come from the real Mosquitto
(``KINETIC_MQTT_URL``). Screenshots go to ``docs/screenshots/``.
"""

from __future__ import annotations

import io
import threading
import time
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dashboards.app import create_app
from dashboards.live import MqttLiveFeed
from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from insole_common.layouts import KC16
from insole_common.messages import CollectorStatus, InsoleStatus
from research.deid import Subject
from storage.archive import RawArchive
from storage.store import SQLiteStore
from tests.fixtures.dashboard import FIXTURE_PASSWORD, ServerThread, build_fixture
from transport.mqtt import connect, make_client

selenium = pytest.importorskip("selenium")  # a declared dependency: importorskip only guards odd installs
from selenium import webdriver  # noqa: E402 - after importorskip
from selenium.webdriver.chrome.service import Service  # noqa: E402 - after importorskip
from selenium.webdriver.common.by import By  # noqa: E402 - after importorskip
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402 - after importorskip

TODAY = date(2026, 11, 20)
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def site(tmp_path_factory, mqtt_settings):
    tmp = tmp_path_factory.mktemp("dash")
    store = SQLiteStore(tmp / "kinetic.sqlite")
    archive = RawArchive(tmp / "archive")
    created = build_fixture(store, today=TODAY, archive=archive)
    feed = MqttLiveFeed(mqtt_settings)
    feed.start()
    pub = make_client(mqtt_settings)
    connect(pub, mqtt_settings)
    now_us = int(time.time() * 1e6)
    retained = [
        (topics.collector_status_topic("pat-a"), CollectorStatus(online=True, time_us=now_us).to_json()),
        (topics.insole_status_topic("pat-a", "L"),
         InsoleStatus(side="L", connected=True, time_us=now_us, battery_pct=81).to_json()),
        (topics.insole_status_topic("pat-a", "R"),
         InsoleStatus(side="R", connected=True, time_us=now_us, battery_pct=15).to_json()),
    ]
    for topic, payload in retained:
        pub.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while feed.status("pat-a")["R"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    app = create_app(store, secret="t" * 48, feed=feed, today=lambda: TODAY, archive=archive)
    with ServerThread(app) as server:
        yield {"url": server.url, "store": store, "created": created, "pub": pub, "tmp": tmp}
    for topic, _ in retained:  # leave the shared broker as we found it
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    feed.stop()
    store.close()


@pytest.fixture(scope="module")
def browser(site):
    downloads = site["tmp"] / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1360,1000"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def wait(driver, cond, timeout=15):
    return WebDriverWait(driver, timeout).until(cond)


def ready(driver):
    wait(driver, lambda d: d.execute_script("return document.body && document.body.dataset.ready === '1'"))
    assert not driver.execute_script("return document.body.dataset.error || ''")


def click_and_load(driver, element):
    """Click something that loads a new page, and wait until that page has drawn."""
    # a marker on the old page's window: gone once the new document is loaded. (Holding the old <body>
    # and waiting for it to go stale races: Chromium may answer "node does not belong to the document"
    # instead of a stale-element error.)
    driver.execute_script("window.__kcOldPage = true;")
    element.click()
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return window.__kcOldPage === undefined"))
    ready(driver)


def sign_in(driver, url, username):
    driver.delete_all_cookies()
    driver.get(url + "/login")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(FIXTURE_PASSWORD)
    driver.find_element(By.ID, "signin").click()
    wait(driver, lambda d: "/login" not in d.current_url)
    ready(driver)


def shot(driver, name, height=None):
    SHOTS.mkdir(parents=True, exist_ok=True)
    if height:
        total = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1360, min(max(total + 40, 700), height))
    driver.save_screenshot(str(SHOTS / name))
    driver.set_window_size(1360, 1000)


def test_therapist_list_patient_page_and_session(site, browser):
    url = site["url"]
    sign_in(browser, url, "ther-1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#patients tbody tr")
    assert [r.get_attribute("data-patient") for r in rows] == ["pat-a", "pat-b"]  # most urgent first; never pat-c
    assert "Left foot: lateral load higher than baseline" in rows[0].text  # in words (dashboards/flag_text.py)
    shot(browser, "therapist-patients.png")

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
    shot(browser, "therapist-patient.png", height=2600)

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
    shot(browser, "therapist-session.png", height=1500)


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
    shot(browser, "login.png")


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
    page = browser.find_element(By.TAG_NAME, "main").text.lower()
    for jargon in ("cop", "lateral", "fraction", "baseline", "symmetry", "cadence", "flag"):
        assert jargon not in page.split(), jargon
    shot(browser, "patient-me.png")
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
    shot(browser, "researcher-sessions.png")

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


def _walk_batches(side: str, seq0: int, t0_us: int, n: int) -> bytes:
    """A synthetic live batch: a load moving from heel to toe."""

    phase = (np.arange(n) + seq0) % 100 / 100.0
    centre = 0.05 + 0.9 * phase
    kpa = 300 * np.exp(-((np.asarray(KC16.ap)[None, :] - centre[:, None]) ** 2) / 0.02)
    return encode_batch(Batch(device_id=f"live-{side}", side=side, sample_rate_hz=100.0, first_seq=seq0,
                              device_time_us=t0_us, collector_time_us=t0_us, pressure_raw=np.round(kpa * 10).astype(np.uint16),
                              layout_id=1, pressure_unit=PressureUnit.KPA, pressure_scale=0.1))


def test_live_view_updates_from_mqtt(site, browser):
    url, pub = site["url"], site["pub"]
    sign_in(browser, url, "ther-1")
    browser.get(url + "/therapist/live/pat-a")
    stop = threading.Event()

    def stream():
        seq, t_us = 0, int(time.time() * 1e6)
        while not stop.is_set():
            for side in ("L", "R"):
                pub.publish(topics.raw_topic("pat-a", side), _walk_batches(side, seq, t_us, 10), qos=0)
            seq += 10
            t_us += 100_000
            stop.wait(0.1)

    worker = threading.Thread(target=stream, daemon=True)
    worker.start()
    try:
        wait(browser, lambda d: d.execute_script("return document.body.dataset.liveSides") == "LR")
        first = int(browser.execute_script("return document.body.dataset.frames"))
        time.sleep(1.2)
        later = int(browser.execute_script("return document.body.dataset.frames"))
        assert later - first >= 3  # several frames a second
        feet = browser.find_elements(By.CSS_SELECTOR, "#feet svg.footmap")
        assert len(feet) == 2 and all(f.find_elements(By.CSS_SELECTOR, "circle.cop-now") for f in feet)
        assert "hub online" in browser.find_element(By.ID, "live-state").text
        shot(browser, "therapist-live.png")
    finally:
        stop.set()
        worker.join(5)
        browser.get(url + "/therapist")  # closes the event stream


def test_api_docs_page(site, browser):
    sign_in(browser, site["url"], "ther-1")
    browser.get(site["url"] + "/api/docs")
    rows = browser.find_elements(By.CSS_SELECTOR, "#operations tbody tr")
    assert len(rows) >= 15
    assert "therapist (assigned patients only)" in browser.find_element(By.ID, "operations").text
    shot(browser, "api-docs.png", height=1800)
