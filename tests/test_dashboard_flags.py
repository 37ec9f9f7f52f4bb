"""The therapist overview lists every active flag, and the trend band is the stored baseline's."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from dashboards import data, overview
from dashboards.live import LiveFeed
from insole_common import metrics as C
from storage.flags import baselines as stored_baselines, save_detection
from storage.store import SQLiteStore
from tests.fixtures.dashboard import build_fixture, fixture_flag

TODAY = date(2026, 11, 20)
NOW_US = 1_795_000_000_000_000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = SQLiteStore(tmp_path_factory.mktemp("flags") / "kinetic.sqlite")
    build_fixture(store, today=TODAY, days=14, strides_per_session=10, simulated_walk_s=None)
    yield store
    store.close()


def test_a_flag_raised_weeks_ago_and_never_cleared_is_in_the_overview(store):
    old = (TODAY - timedelta(days=20)).isoformat()
    cleared = fixture_flag("pat-c", "heel_load_fraction_R", (TODAY - timedelta(days=3)).isoformat(), NOW_US,
                           active=False)
    save_detection(store, "pat-c", [fixture_flag("pat-c", "lateral_load_fraction_L", old, NOW_US), cleared], [],
                   keep_auto_baselines=True)
    (row,) = overview.overview(store, "ther-2", TODAY, NOW_US, LiveFeed().status)
    assert row["patient"] == "pat-c" and row["raised_n"] == 1
    (flag,) = row["flags"]
    assert (flag["metric"], flag["day"], flag["since_day"], flag["state"]) == ("lateral_load_fraction_L", old, old, "raised")
    assert flag["metric_label"] == "Lateral load" and flag["side"] == "L"


def test_the_trend_threshold_is_the_stored_one_and_none_without(store):
    trends = {m["key"]: m for m in data.trends(store, "pat-a")["metrics"]}
    stored = stored_baselines(store, "pat-a")
    assert set(trends) <= set(stored)
    for key, m in trends.items():  # rounded to the catalogue's decimals + 1 (in the stored unit)
        digits = C.metric(key.removeprefix("si_").replace("stance_time_s", "stance_symmetry_pct")).decimals + 1
        assert m["threshold"] == round(stored[key]["threshold"], digits) and m["threshold_source"] == "baseline"
    save_detection(store, "pat-b", [], [], keep_auto_baselines=False)  # no baselines stored for pat-b
    assert all(m["threshold"] is None and m["baseline"] is None for m in data.trends(store, "pat-b")["metrics"])


def test_weekly_trend_is_the_stored_weekly_summary(store):
    trend = data.trends(store, "pat-a")
    cadence = next(m for m in trend["metrics"] if m["key"] == "cadence_steps_per_min")
    weekly = store.query("SELECT week_start, metrics_json FROM weekly_summaries WHERE patient = 'pat-a' ORDER BY week_start")
    assert trend["weeks"] == list(weekly["week_start"])
    assert [w["value"] for w in cadence["weekly"]] == [round(json.loads(m)["cadence_steps_per_min"], 2)
                                                        for m in weekly["metrics_json"]]
