"""Issue 19 validation pieces (the full figures come from ``kinetic validate-detection --suite issue19``): the
scoring of the acceptance rules, the known changes applied to recordings, and a few real walks replayed through
``kinetic import`` with a known change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from processing.analytics import analyze
from processing.readers.auto import read_any
from processing.summaries import daily_metrics
from simulator.changes import stretch_time, transfer_load
from simulator.cohort import Change
from simulator.import_replay import ReplayDays, replay_patient
from simulator.validate19 import gaitpdb_speeds, score, summarise
from storage.store import SQLiteStore
from tests.conftest import SHARED_DATA

GAITPDB = SHARED_DATA / "physionet-gaitpdb"
VALID = list(range(28))


def test_score_counts_right_wrong_and_false_weeks():
    assert score([("lateral_shift", 16, "cop_ml_mean_fw_R", "R")], VALID, "lateral", "R", 28)["found"]
    wrong_side = score([("lateral_shift", 16, "cop_ml_mean_fw_L", "L")], VALID, "lateral", "R", 28)
    assert not wrong_side["found"] and wrong_side["wrong"]
    assert score([("slowing", 20, "cadence_steps_per_min", None)], VALID, "faster", "R", 28)["found"]
    assert score([("limp", 20, "si_stance_time_s", "R")], VALID, "slower", "R", 28)["wrong"]
    late = score([("slowing", 14 + 14, "cadence_steps_per_min", None)], VALID, "slower", "R", 42)
    assert not late["found"]  # day 28 is past the 14 days
    stable = score([("limp", 12, "si_stance_time_s", "L")], VALID + list(range(28, 42)), "stable", "L", 42)
    assert stable["weeks_n"] == 4 and stable["false_weeks_n"] == 1
    s = summarise([stable, late])
    assert s["stable"]["false_week_rate"] == 0.25 and s["all"]["wrong_rate"] == 0.0
    assert {t["arm"]: t["met"] for t in s["targets"]}["stable"] is False


def test_known_changes_move_the_metrics_by_the_right_amount():
    rec = read_any(GAITPDB / "GaCo22_01.txt")
    base = daily_metrics(analyze(rec).strides)
    lateral = daily_metrics(analyze(transfer_load(rec, side="R", kind="medial_to_lateral", fraction=0.1)).strides)
    heel = daily_metrics(analyze(transfer_load(rec, side="L", kind="heel_to_forefoot", fraction=0.2)).strides)
    slow = daily_metrics(analyze(stretch_time(rec, 1.0 / 0.96)).strides)
    assert 0.012 < lateral["cop_ml_mean_fw_R"] - base["cop_ml_mean_fw_R"] < 0.025
    assert lateral["cop_ml_mean_fw_L"] == pytest.approx(base["cop_ml_mean_fw_L"])
    assert heel["heel_load_fraction_L"] / base["heel_load_fraction_L"] == pytest.approx(0.80, abs=0.02)
    assert heel["heel_load_fraction_R"] == pytest.approx(base["heel_load_fraction_R"])
    assert slow["cadence_steps_per_min"] / base["cadence_steps_per_min"] == pytest.approx(0.96, abs=0.003)


def test_gaitpdb_speeds_read_from_the_data_readme():
    speeds = gaitpdb_speeds(GAITPDB)
    assert speeds["GaCo22_01"] == pytest.approx(1.542) and len(speeds) >= 10


@pytest.mark.parametrize("record, arm, change", [
    ("GaCo22_01", "heel", Change(kind="heel_transfer", magnitude=0.2, onset_day=14, side="L")),
    ("GaCo22_01", "faster", Change(kind="faster", magnitude=0.08, onset_day=14)),
])
def test_real_walk_replayed_through_import(tmp_path: Path, record, arm, change):
    store = SQLiteStore(tmp_path / "r.sqlite")
    store.migrate()
    days = ReplayDays(n_days=28, sessions_per_day=1)
    out = replay_patient(store, read_any(GAITPDB / f"{record}.txt"), patient="v19", change=change, seed=7,
                         speed_m_s=gaitpdb_speeds(GAITPDB).get(record), days=days)
    s = score(out["raised"], out["valid_days"], arm, change.side, days.n_days)
    if arm == "heel":
        assert s["found"] and not s["wrong"], out["raised"]
    else:
        assert not s["found"] and not s["wrong"], out["raised"]  # walking faster raises nothing
    assert np.isfinite(out["heel_share"])
