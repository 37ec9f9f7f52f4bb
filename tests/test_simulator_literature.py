"""Simulator against the literature: plantar pressure by region (Putti et al. 2007), walking speed by the walk
ratio (Sekiya & Nagasaki 1998), and the heel-pain compensation model moving each measure its way (one test per
measure, through the product's own analysis)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from insole_common import metrics as C
from insole_common.layouts import REGIONS
from processing.analytics import analyze
from simulator import SimulationParams, simulate
from simulator.params import DAY_SPEED_CV, day_speed_factors

WALK = (("standing", 5.0), ("walking", 110.0), ("standing", 5.0))
#: Putti et al. 2007 (Pedar in-shoe, 53 healthy adults): peak pressure mean (SD), kPa
PUTTI_HEEL_KPA = (264.3, 44.1)
PUTTI_HALLUX_KPA = (280.4, 83.0)


def region_peaks_kpa(sim, side: str) -> dict[str, tuple[float, float]]:
    """Per region: the hottest sensor's median per-stride peak and the region's mean pressure over the walking
    stances (kPa)."""
    foot = sim.recording.feet[side]
    p = np.nan_to_num(foot.pressure)
    ev = sim.truth.events
    ev = ev[(ev["side"] == side) & (ev["activity"] == "walking")]
    t = foot.t_s
    peaks, means = [], []
    for hs, to in zip(ev["heel_strike_s"], ev["toe_off_s"], strict=True):
        m = (t >= hs) & (t <= to)
        peaks.append(p[m].max(axis=0))
        means.append(p[m].mean(axis=0))
    pk, mn = np.median(peaks, axis=0), np.mean(means, axis=0)
    return {r: (float(pk[foot.layout.region_mask(r)].max()), float(mn[foot.layout.region_mask(r)].mean()))
            for r in REGIONS}


@pytest.mark.parametrize("layout", ["kc16", "orphe6"])
def test_healthy_peak_pressure_is_highest_under_heel_and_forefoot_lowest_under_midfoot(layout: str) -> None:
    sim = simulate(SimulationParams(schedule=WALK, layout=layout, noise_kpa=0.0), seed=1)
    for side in ("L", "R"):
        r = region_peaks_kpa(sim, side)
        heel, mid, fore = r["heel"][0], r["midfoot"][0], r["forefoot"][0]
        assert abs(heel - PUTTI_HEEL_KPA[0]) <= 2 * PUTTI_HEEL_KPA[1], r
        assert abs(fore - PUTTI_HALLUX_KPA[0]) <= 2 * PUTTI_HALLUX_KPA[1], r
        assert mid < 0.5 * min(heel, fore), r
        assert r["midfoot"][1] < r["heel"][1], r  # mean pressure too


def test_walking_speed_moves_cadence_and_stride_length_by_the_walk_ratio() -> None:
    base = SimulationParams()
    assert base.walking_speed_factor == 1.0 and base.stride_time_s == pytest.approx(120 / 105)  # healthy default
    slow = SimulationParams(speed_factor=0.9)
    assert 120 / slow.stride_time_s == pytest.approx(105 * math.sqrt(0.9))
    assert slow.walking_stride_length_m == pytest.approx(1.30 * math.sqrt(0.9))
    # walk ratio (step length / cadence) unchanged, speed x 0.9
    wr = (slow.walking_stride_length_m / 2) / (120 / slow.stride_time_s)
    assert wr == pytest.approx((1.30 / 2) / 105)
    ev = simulate(SimulationParams(schedule=WALK, speed_factor=0.9, imu=False), seed=2).truth.events
    walking = ev[ev["activity"] == "walking"]
    assert np.median(120 / walking["stride_time_s"]) == pytest.approx(105 * math.sqrt(0.9), rel=0.02)
    assert np.median(walking["stride_length_m"]) == pytest.approx(1.30 * math.sqrt(0.9), rel=0.02)
    days = day_speed_factors(4000, np.random.default_rng(0))
    assert np.std(days) / np.mean(days) == pytest.approx(DAY_SPEED_CV, rel=0.1)
    assert np.mean(days) == pytest.approx(1.0, abs=0.01)


COLS = [C.CADENCE_STEPS_PER_MIN, C.STRIDE_TIME_S, C.STRIDE_LENGTH_M, C.REARFOOT_CONTACT_S, C.REARFOOT_CONTACT_PCT,
        C.HEEL_LOAD_FRACTION, C.LATERAL_FOREFOOT_LOAD_FRACTION, C.STANCE_IMPULSE]


@pytest.fixture(scope="module")
def healthy_and_pain() -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    out = []
    for pain in (0.0, 1.0):
        res = analyze(simulate(SimulationParams(schedule=WALK, heel_pain=pain, affected_side="R"), seed=3).recording)
        out.append((res.strides.groupby(C.SIDE)[COLS].median(), res.summary["symmetry_index_pct"]))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def test_heel_pain_walks_slower_with_lower_cadence(healthy_and_pain) -> None:
    h, p, _, _ = healthy_and_pain
    assert (p[C.CADENCE_STEPS_PER_MIN] < 0.97 * h[C.CADENCE_STEPS_PER_MIN]).all()
    assert (p[C.STRIDE_TIME_S] > 1.03 * h[C.STRIDE_TIME_S]).all()


def test_heel_pain_shortens_strides(healthy_and_pain) -> None:
    h, p, _, _ = healthy_and_pain
    assert (p[C.STRIDE_LENGTH_M] < 0.97 * h[C.STRIDE_LENGTH_M]).all()


def test_heel_pain_shortens_rearfoot_contact_on_the_painful_side(healthy_and_pain) -> None:
    h, p, _, _ = healthy_and_pain
    assert p.loc["R", C.REARFOOT_CONTACT_PCT] < 0.7 * h.loc["R", C.REARFOOT_CONTACT_PCT]
    assert p.loc["R", C.REARFOOT_CONTACT_S] < 0.7 * h.loc["R", C.REARFOOT_CONTACT_S]
    assert p.loc["L", C.REARFOOT_CONTACT_PCT] == pytest.approx(h.loc["L", C.REARFOOT_CONTACT_PCT], rel=0.1)


def test_heel_pain_lowers_heel_impulse_on_the_painful_side(healthy_and_pain) -> None:
    h, p, _, _ = healthy_and_pain
    assert p.loc["R", C.HEEL_LOAD_FRACTION] < 0.85 * h.loc["R", C.HEEL_LOAD_FRACTION]
    assert p.loc["L", C.HEEL_LOAD_FRACTION] == pytest.approx(h.loc["L", C.HEEL_LOAD_FRACTION], rel=0.05)


def test_heel_pain_raises_lateral_forefoot_impulse_on_the_painful_side(healthy_and_pain) -> None:
    h, p, _, _ = healthy_and_pain
    assert p.loc["R", C.LATERAL_FOREFOOT_LOAD_FRACTION] > 1.15 * h.loc["R", C.LATERAL_FOREFOOT_LOAD_FRACTION]
    assert p.loc["L", C.LATERAL_FOREFOOT_LOAD_FRACTION] == pytest.approx(
        h.loc["L", C.LATERAL_FOREFOOT_LOAD_FRACTION], rel=0.05)


def test_heel_pain_moves_load_asymmetry_away_from_the_painful_side(healthy_and_pain) -> None:
    _, _, hs, ps = healthy_and_pain
    # signed: positive = more on the left; the right foot hurts
    assert abs(hs[C.STANCE_IMPULSE]) < 2 and ps[C.STANCE_IMPULSE] > 5
    assert abs(hs[C.HEEL_LOAD_FRACTION]) < 3 and ps[C.HEEL_LOAD_FRACTION] > 10


def test_bilateral_heel_pain_changes_both_feet_without_asymmetry() -> None:
    p = SimulationParams(heel_pain=1.0, heel_pain_bilateral=True)
    assert p.pain_on("L") == p.pain_on("R") == 1.0 and p.effective_asymmetry == 0.0
    one = SimulationParams(heel_pain=0.5, affected_side="L")
    assert one.pain_on("R") == 0.0 and one.heel_offload_on("L") > one.heel_offload_on("R") == 0.0
