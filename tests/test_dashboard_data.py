"""The dashboards' pieces without a browser: live feed, heat maps, labels, plain words."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from dashboards import data
from dashboards.live import LiveFeed
from dashboards.plots import GRID_AP_N, GRID_ML_N, heat_grid
from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from insole_common.layouts import KC16
from insole_common.messages import CollectorStatus
from kinetic.cli import main as kinetic
from processing.service import ProcessingService
from research.deid import Subject, ensure_subject_labels
from simulator import SimulationParams, simulate
from storage.archive import RawArchive
from storage.patients import patient_time_zone, register_patient
from storage.store import SQLiteStore
from tests.fixtures.dashboard import build_fixture
from tests.test_live_strides import session_message, walk_messages

#: 2026-12-13 23:30 UTC, a Sunday (ISO week 50); in Pacific/Auckland (UTC+13) 12:30 on Monday 14 December
LATE_WALK_US = 1_797_204_600_000_000


def late_walks(store: SQLiteStore, archive: RawArchive | None = None) -> None:
    """The same 30-second walk at :data:`LATE_WALK_US` of ``p-utc`` and of ``p-nz`` (in Pacific/Auckland), through
    the processing service."""
    service = ProcessingService(store, live_strides=False, archive=archive)  # migrates the store
    store.set_patient_time_zone("p-nz", "Pacific/Auckland")
    walk = simulate(SimulationParams(schedule=(("standing", 2.0), ("walking", 20.0)), imu=True), seed=3)
    for patient in ("p-utc", "p-nz"):
        with store.transaction():
            service.handle_group([session_message(patient, "start", f"s-{patient}", LATE_WALK_US),
                                  *walk_messages(walk, patient, start_us=LATE_WALK_US),
                                  session_message(patient, "stop", f"s-{patient}", LATE_WALK_US + 30_000_000)])
    assert service.stats.sessions_closed_n == 2


def test_live_feed_keeps_status_and_latest_frames():
    feed = LiveFeed()
    assert feed.status("p1") == {"broker": False, "collector": None, "L": None, "R": None}
    feed.handle(topics.collector_status_topic("p1"), CollectorStatus(online=True, time_us=1).to_json(), now_s=10.0)
    feed.handle(topics.collector_status_topic("p1"), b"not json", now_s=10.0)  # dropped, not raised
    assert feed.status("p1")["collector"]["online"] is True
    heel = np.zeros((10, 16), np.uint16)
    heel[:, :4] = 2000  # 200 kPa on the four heel sensors
    with feed.watch("p1"):
        feed.handle(topics.raw_topic("p1", "L"), encode_batch(Batch(
            device_id="d", side="L", sample_rate_hz=100.0, first_seq=0, device_time_us=0, collector_time_us=0,
            pressure_raw=heel, layout_id=1, pressure_unit=PressureUnit.KPA, pressure_scale=0.1)), now_s=10.0)
        snap = feed.snapshot("p1", now_s=10.5)
        foot = snap["feet"]["L"]
        assert foot["values"][:4] == [200.0] * 4 and foot["values"][4:] == [0.0] * 12
        assert len(foot["trail"]) == 10 and all(ap < 0.2 for ap, _ in foot["trail"])
        assert not foot["stale"] and feed.snapshot("p1", now_s=20.0)["feet"]["L"]["stale"]
    assert feed.snapshot("p1")["feet"] == {}  # nobody watching: frames forgotten


def test_heat_grid_peaks_under_the_loaded_sensor():
    values = np.zeros(16)
    values[0] = 100.0  # medial heel, ap 0.07, ml -0.10
    grid = np.array(heat_grid(KC16, values))
    assert grid.shape == (GRID_AP_N, GRID_ML_N)
    i, j = np.unravel_index(grid.argmax(), grid.shape)
    assert i <= 4 and j < GRID_ML_N // 2  # heel rows, medial half
    assert grid.max() <= 100.0 + 1e-9 and grid.min() >= 0.0


def test_research_labels_are_random_and_stable(tmp_path):
    stores = [SQLiteStore(tmp_path / f"{k}.sqlite") for k in range(2)]
    labels = []
    for store in stores:
        store.migrate()
        store.execute("INSERT INTO patients (pseudonym, created_us) VALUES ('p1', 0)")
        ensure_subject_labels(store)
        ensure_subject_labels(store)
        labels.append(store.query("SELECT label FROM research_subjects WHERE patient = 'p1'")["label"].tolist())
    assert len(labels[0]) == 1 and labels[0] != labels[1]  # not derived from the pseudonym


def test_plain_trend_has_no_numbers_or_jargon(tmp_path):
    store = SQLiteStore(tmp_path / "k.sqlite")
    build_fixture(store, today=date(2026, 11, 20), days=28, strides_per_session=10, simulated_walk_s=None,
                  accounts=False)
    for patient in ("pat-a", "pat-b", "pat-c"):
        words = " ".join(data.plain_trend(store, patient, date(2026, 11, 20))).lower()
        assert not any(ch.isdigit() for ch in words)
        for jargon in ("cop", "lateral", "fraction", "baseline", "symmetry", "cadence", "stride"):
            assert jargon not in words
    assert "outside of your feet" in " ".join(data.plain_trend(store, "pat-a", date(2026, 11, 20)))
    assert "the length of your steps: less than usual" in " ".join(data.plain_trend(store, "pat-b", date(2026, 11, 20)))
    assert data.plain_trend(store, "nobody", date(2026, 11, 20))[0].startswith("We have not seen any walks")


def test_the_patients_page_counts_days_in_the_patients_time_zone(tmp_path):
    """A walk at 23:30 UTC on Sunday is Monday's walk for a patient in Auckland: this week, the session list, the
    daily table and the research days all put it on the patient's Monday; a UTC patient's stays on Sunday."""
    store = SQLiteStore(tmp_path / "k.sqlite")
    late_walks(store)
    now_us = LATE_WALK_US + 10 * 60_000_000  # 23:40 UTC: the app's (UTC) today is still Sunday
    sunday, monday = date(2026, 12, 13), date(2026, 12, 14)
    nz, utc = (data.patient_week(store, p, sunday, now_us) for p in ("p-nz", "p-utc"))
    assert (nz.time_zone, nz.today, utc.today) == ("Pacific/Auckland", monday, sunday)
    assert [d["day"] for d in nz.days if d["steps"]] == ["2026-12-14"] and nz.days[-1]["day"] == "2026-12-14"
    assert [d["day"] for d in utc.days if d["steps"]] == ["2026-12-13"]
    assert nz.wearing_s == utc.wearing_s == pytest.approx(30.0)
    assert data.sessions(store, "p-nz")[0]["day"] == data.session_detail(store, "s-p-nz")["day"] == "2026-12-14"
    assert data.sessions(store, "p-utc")[0]["day"] == "2026-12-13"
    assert data.daily_table(store, "p-nz")["day"].tolist() == ["2026-12-14"]
    assert [w["week"] for w in data.trends(store, "p-nz")["metrics"][0]["weekly"]] == ["2026-12-14"]
    research = {r["session"]: r["day"] for r in data.research_sessions(store)}
    shifts = dict(store.query("SELECT patient, date_shift_days FROM research_subjects").values.tolist())
    labels = dict(store.query("SELECT session_id, label FROM research_sessions").values.tolist())
    for patient, day in (("p-nz", "2026-12-14"), ("p-utc", "2026-12-13")):
        shifted = Subject("S", "c", int(shifts[patient])).shift_day(day)
        assert research[labels[f"s-{patient}"]] == shifted
        assert data.research_session(store, labels[f"s-{patient}"])[3] == shifted


def test_cli_sets_a_patients_time_zone_and_refuses_an_unknown_one(tmp_path, capsys):
    db = tmp_path / "k.sqlite"
    store = SQLiteStore(db)
    store.migrate()
    register_patient(store, "p1", 0)
    assert kinetic(["dashboard", "set-time-zone", "p1", "Pacific/Auckland", "--db", str(db)]) == 0
    assert patient_time_zone(store, "p1") == "Pacific/Auckland"
    capsys.readouterr()
    for patient, zone, message in (("p1", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
                                   ("nobody", "Europe/Berlin", "unknown patient 'nobody'")):
        assert kinetic(["dashboard", "set-time-zone", patient, zone, "--db", str(db)]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert patient_time_zone(store, "p1") == "Pacific/Auckland" and patient_time_zone(store, "nobody") == "UTC"
