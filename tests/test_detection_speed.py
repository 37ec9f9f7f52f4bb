"""Issue 19 in the detector: the stride series (shortened stride / slowing, with or without an IMU), walking speed
as a confounder (matched cadence) and thresholds that scale with a small heel share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insole_common import metrics as C
from insole_common.errors import ValidationError
from processing.analytics.walk_ratio import WalkRatio
from processing.detection import CompensationDetector, DetectionSettings
from tests.test_analytics_moticon import WALKS, walk_figures
from tests.test_detection import raised, synthetic_daily


def _cadence_scaled(daily: pd.DataFrame, first: int, factor: float) -> pd.DataFrame:
    out = daily.copy()
    out.loc[first:, "cadence_steps_per_min"] *= factor
    out["stride_time_s"] = 120.0 / out["cadence_steps_per_min"]
    return out


def test_walk_ratio_model_gives_shortened_stride_without_imu():
    wr = WalkRatio.from_height(1.75)
    base = synthetic_daily(34, seed=3, with_stride_length=False)
    det = CompensationDetector().detect(_cadence_scaled(base, 15, 0.95), walk_ratio=wr)
    ev = raised(det, "shortened_stride")
    assert len(ev) == 1 and ev[0].metric == "stride_length_m" and ev[0].current < ev[0].baseline
    assert ev[0].evidence["walk_ratio"]["source"] == "height"
    assert ev[0].baseline == pytest.approx(2 * wr.m_per_spm * base.loc[:9, "cadence_steps_per_min"].mean(), rel=1e-6)
    assert "slowing" not in {e.kind for e in det.flags_}  # one signal, watched once
    # walking 5 % faster is never a shortened stride
    assert raised(CompensationDetector().detect(_cadence_scaled(base, 15, 1.05), walk_ratio=wr)) == []


def test_walk_ratio_from_a_calibration_walk():
    strides = pd.DataFrame({"side": ["L", "R"] * 6, "heel_strike_s": np.arange(12) * 0.55,
                            "next_heel_strike_s": np.arange(12) * 0.55 + 1.1, "cadence_steps_per_min": 109.0})
    wr = WalkRatio.from_walk(strides, distance_m=10.0)
    assert wr.detail["steps_n"] == 13 and wr.m_per_spm == pytest.approx(10.0 / 13 / 109.0)
    with pytest.raises(ValidationError):
        WalkRatio.from_walk(strides, distance_m=100.0)  # a 7.7 m step: not an adult's walk
    with pytest.raises(ValidationError):
        WalkRatio.from_height(175.0)  # centimetres


def test_imu_stride_length_is_watched_down_only():
    longer = synthetic_daily(32, seed=4, changes={"stride_length_m": (15, 31, +0.12)})
    shorter = synthetic_daily(32, seed=4, changes={"stride_length_m": (15, 31, -0.12)})
    assert raised(CompensationDetector().detect(longer)) == []
    ev = raised(CompensationDetector().detect(shorter), "shortened_stride")
    assert ev and ev[0].evidence["stride_length"] == "measured (IMU)"


def _slow_lateral(seed: int, shift_fw: float) -> pd.DataFrame:
    """A patient whose COP is more lateral on slower days (0.002 fw per step/min), with cadence spread in the
    baseline, who walks 8 steps/min slower from day 15 on (``shift_fw``: a real lateral shift on top)."""
    rng = np.random.default_rng(seed)
    daily = synthetic_daily(34, seed=seed)
    cad = 105.0 + 4.0 * rng.normal(size=len(daily))
    cad[15:] -= 8.0
    daily["cadence_steps_per_min"] = cad
    for side in ("L", "R"):
        daily[f"cop_ml_mean_fw_{side}"] = 0.02 + 0.002 * (105.0 - cad) + 0.004 * rng.normal(size=len(daily))
    daily.loc[15:, "cop_ml_mean_fw_L"] += shift_fw
    return daily


def test_slower_walking_is_not_a_lateral_shift_at_matched_cadence():
    slow = _slow_lateral(21, 0.0)
    lateral = list(raised(CompensationDetector(speed_adjust=False).detect(slow), "lateral_shift"))
    assert lateral, "without the adjustment the slower days look like a lateral shift"
    det = CompensationDetector().detect(slow)
    assert raised(det, "lateral_shift") == []
    assert det.baselines_["cop_ml_mean_fw_L"].sd < CompensationDetector(speed_adjust=False).detect(
        slow).baselines_["cop_ml_mean_fw_L"].sd  # the residual SD is smaller than the raw one
    # a real one-sided shift while walking slower is still seen, on its side, with the adjustment as evidence
    ev = raised(CompensationDetector().detect(_slow_lateral(21, 0.03)), "lateral_shift")
    assert [e.evidence["side"] for e in ev] == ["L"]
    adj = ev[0].evidence["cadence_adjustment"]
    assert adj["slope_per_spm"] < 0 and adj["baseline_cadence_spm"] == pytest.approx(105.0, abs=3.0)


@pytest.mark.parametrize("share", [0.035, 0.20])
def test_heel_offload_of_30_percent_is_seen_whatever_the_heel_share(share):
    """A 30 % heel off-load on one foot, with the day-to-day noise 5 % of the patient's own heel share."""
    rng = np.random.default_rng(5)
    daily = synthetic_daily(34, seed=5)
    for side in ("L", "R"):
        daily[f"heel_load_fraction_{side}"] = share * (1 + 0.05 * rng.normal(size=len(daily)))
    daily.loc[15:, "heel_load_fraction_R"] *= 0.70
    ev = raised(CompensationDetector().detect(daily), "heel_offloading")
    assert [e.evidence["side"] for e in ev] == ["R"] and ev[0].day <= 21
    base = CompensationDetector().detect(daily).baselines_["heel_load_fraction_R"]
    assert base.sd < 0.1 * share  # scaled with the share


def test_relative_settings_in_a_deployment_file():
    s = DetectionSettings.from_mapping({"sd_priors_relative": {"heel_load_fraction": 0.2}, "speed_adjust": False})
    assert s.sd_priors_relative["heel_load_fraction"] == 0.2 and s.speed_adjust is False
    with pytest.raises(ValidationError):
        DetectionSettings.from_mapping({"speed_adjust": 1})


@pytest.mark.parametrize("walk", sorted(WALKS))
def test_imu_stride_length_within_5_percent_of_the_moticon_report(walk):
    """The stride length the IMU series watches (zero-velocity-update integration) against the vendor report's
    stride lengths of the same strides (../shared/data/moticon-opengo-sample/gait_report_steps.csv)."""
    f = walk_figures(walk)
    assert f["sl_det_m"].size >= 2
    assert abs(f["sl_det_m"].mean() / f["sl_ref_m"].mean() - 1) <= 0.05


def test_stride_series_direction_is_the_catalogues():
    assert C.BY_KEY[C.STRIDE_LENGTH_M].compensation == C.BY_KEY[C.CADENCE_STEPS_PER_MIN].compensation == C.DOWN


# ---- issue 19, round 2 (docs/validation.md): the new measures in the detector --------------------------------------
def test_with_imu_cadence_is_watched_as_slowing_too():
    """An IMU stride length unchanged while the cadence falls 6 %: slowing (before round 2 only the stride length
    was watched with an IMU, and this raised nothing); 6 % faster raises nothing."""
    base = synthetic_daily(32, seed=5)
    ev = raised(CompensationDetector().detect(_cadence_scaled(base, 15, 0.94)), "slowing")
    assert len(ev) == 1 and ev[0].metric == "cadence_steps_per_min" and ev[0].current < ev[0].baseline
    assert raised(CompensationDetector().detect(_cadence_scaled(base, 15, 1.06))) == []
    assert raised(CompensationDetector(slowing_with_imu=False).detect(_cadence_scaled(base, 15, 0.94))) == []


def _with_lateral_forefoot(daily: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = daily.copy()
    for s in ("L", "R"):
        out[f"lateral_forefoot_load_fraction_{s}"] = 0.30 + 0.01 * rng.normal(size=len(out))
        out[f"rearfoot_contact_pct_{s}"] = 18.0 + 0.7 * rng.normal(size=len(out))
    return out


def test_lateral_forefoot_share_is_the_lateral_series():
    """One foot's lateral-forefoot share up by 10 % of itself, COP unchanged: lateral shift on that foot, with the
    COP as corroborating evidence (before round 2 the COP was watched and this raised nothing)."""
    daily = _with_lateral_forefoot(synthetic_daily(32, seed=6), seed=6)
    daily.loc[15:, "lateral_forefoot_load_fraction_R"] += 0.03
    det = CompensationDetector().detect(daily)
    ev = raised(det, "lateral_shift")
    assert [(e.metric, e.evidence["side"]) for e in ev] == [("lateral_forefoot_load_fraction_R", "R")]
    assert "cop_ml_mean_fw_R" in ev[0].evidence["corroborating"]
    # the prior SD is relative to the foot's own share (0.05 x 0.30)
    assert det.baselines_["lateral_forefoot_load_fraction_R"].sd == pytest.approx(0.0118, abs=0.002)
    assert raised(CompensationDetector(lateral_forefoot_first=False).detect(daily), "lateral_shift") == []


def test_rearfoot_contact_corroborates_heel_offloading():
    daily = _with_lateral_forefoot(synthetic_daily(32, seed=7), seed=7)
    daily.loc[15:, "heel_load_fraction_L"] *= 0.8
    daily.loc[15:, "rearfoot_contact_pct_L"] -= 4.0
    ev = raised(CompensationDetector().detect(daily), "heel_offloading")
    assert [e.evidence["side"] for e in ev] == ["L"]
    corr = ev[0].evidence["corroborating"]["rearfoot_contact_pct_L"]
    assert corr["current"] < corr["baseline"] - 3.0


def test_per_kind_cusum_settings(tmp_path):
    config = tmp_path / "d.toml"
    config.write_text("[detection]\ncusum_k = 1.0\n[detection.cusum_k_by_kind]\nslowing = 0.5\n"
                      "[detection.min_days_beyond_by_kind]\nslowing = 1\n")
    s = DetectionSettings.from_toml(config)
    assert s.cusum_for("slowing") == (0.5, 4.0, 1) and s.cusum_for("limp") == (1.0, 4.0, 2)
    assert DetectionSettings.from_json(s.to_json()) == s
    config.write_text("[detection.cusum_h_by_kind]\nwobble = 3\n")
    with pytest.raises(ValidationError, match="wobble"):
        DetectionSettings.from_toml(config)
    with pytest.raises(ValidationError):
        DetectionSettings(cusum_k_by_kind={"limp": 9.0})  # k above the z cap
    # the smaller k finds a ~1-SD slowing (2 %) that the default does not (same days)
    slow = _cadence_scaled(synthetic_daily(28, seed=9, with_stride_length=False), 15, 0.98)
    assert raised(CompensationDetector().detect(slow), "slowing") == []
    ev = raised(CompensationDetector(s).detect(slow), "slowing")
    assert ev and "k = 0.5" in ev[0].evidence["rule"]


def _cadence_days(after: float, *, n_after: int = 12) -> pd.DataFrame:
    """Cadence only (no IMU, no calibration: the `slowing` series): 10 baseline days alternating 97.5 / 102.5
    steps/min (mean 100, SD used 2.59 after the prior), then ``n_after`` days at ``after``."""
    cadence = [97.5, 102.5] * 5 + [after] * n_after
    return pd.DataFrame({"strides_n": 60, "cadence_steps_per_min": cadence,
                         "stride_time_s": [120.0 / c for c in cadence]}, index=pd.RangeIndex(len(cadence), name="day"))


def test_mean_rule_finds_a_sustained_small_slowing_that_the_cusum_misses():
    """4.5 steps/min slower every day: z = 1.65 per day, never beyond 1.96, so the CUSUM's two-days-beyond rule
    never raises; the mean of 10 such days is 3.9 sd sqrt(1/10 + 1/10) below the baseline (> 3.3): the mean rule
    raises on the 10th day. Walking faster by as much never raises (heel pain slows walking: Phillips & McClinton
    2017; Cervera-Garvi et al. 2023)."""
    slower = _cadence_days(95.5)
    det = CompensationDetector().detect(slower)
    assert det.baselines_["cadence_steps_per_min"].sd == pytest.approx(2.594, abs=0.001)
    ev = raised(det, "slowing")
    assert [(e.day, e.evidence["rule_kind"], e.days_n) for e in ev] == [(19, "mean", 10)]
    assert "mean of the last 10 valid days" in ev[0].evidence["rule"] and ev[0].current < ev[0].baseline
    assert raised(CompensationDetector(mean_rule_z_by_kind={}).detect(slower)) == []  # the CUSUM alone: nothing
    assert raised(CompensationDetector().detect(_cadence_days(104.5))) == []
    # 9 days are not a window of 10; 3 steps/min slower (mean 2.6 < 3.3) is within the rule
    assert raised(CompensationDetector().detect(_cadence_days(95.5, n_after=9))) == []
    assert raised(CompensationDetector().detect(_cadence_days(97.0))) == []


def test_mean_rule_settings(tmp_path):
    s = DetectionSettings()
    assert s.mean_rule_days == 10 and set(s.mean_rule_z_by_kind) == {"shortened_stride", "slowing", "lateral_shift"}
    config = tmp_path / "d.toml"
    config.write_text("[detection]\nmean_rule_days = 7\n[detection.mean_rule_z_by_kind]\nlimp = 3.0\n")
    loaded = DetectionSettings.from_toml(config)
    assert loaded.mean_rule_days == 7 and loaded.mean_rule_z_by_kind == {"limp": 3.0}  # the table replaces the default
    assert DetectionSettings.from_json(loaded.to_json()) == loaded
    for bad in ("[detection]\nmean_rule_days = 1\n", "[detection.mean_rule_z_by_kind]\nslowing = -1\n",
                "[detection.mean_rule_z_by_kind]\nwobble = 3\n"):
        config.write_text(bad)
        with pytest.raises(ValidationError):
            DetectionSettings.from_toml(config)
