"""The dashboards' pieces without a browser: live feed, heat maps, labels, plain words."""

from __future__ import annotations

from datetime import date

import numpy as np

from dashboards import data
from dashboards.live import LiveFeed
from dashboards.plots import GRID_AP_N, GRID_ML_N, heat_grid
from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from insole_common.layouts import KC16
from insole_common.messages import CollectorStatus
from research.deid import ensure_subject_labels
from storage.store import SQLiteStore
from tests.fixtures.dashboard import build_fixture


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
    assert "shorter" in " ".join(data.plain_trend(store, "pat-b", date(2026, 11, 20)))
    assert data.plain_trend(store, "nobody", date(2026, 11, 20))[0].startswith("We have not seen any walks")
