"""Bad input never crashes and never invents strides: a typed error or a data-quality flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from insole_common.errors import ValidationError
from insole_common.layouts import KC16
from insole_common.recording import FootRecording, Recording
from processing.analytics import analyze
from processing.readers.auto import read_any

FS = 100.0


def gait_load(duration_s: float, *, stride_s: float = 1.1, stance_frac: float = 0.62, phase_s: float = 0.0,
              peak: float = 700.0) -> np.ndarray:
    """A plain double-hump stance / zero swing total force, for edge cases (not a physiological model)."""
    t = np.arange(int(duration_s * FS)) / FS
    ph = ((t - phase_s) % stride_s) / (stride_s * stance_frac)
    hump = np.where(ph < 1, np.sin(np.pi * np.clip(ph, 0, 1)) * (1 - 0.3 * np.sin(2 * np.pi * np.clip(ph, 0, 1)) ** 2), 0.0)
    return peak * hump


def rec_from_loads(l_load: np.ndarray, r_load: np.ndarray) -> Recording:
    feet = {}
    for s, load in (("L", l_load), ("R", r_load)):
        p = np.outer(load, np.full(16, 1 / 16.0))
        feet[s] = FootRecording(s, FS, 0.0, p, "kPa", layout=KC16)
    return Recording(feet=feet, source_format="test")


def walking(duration_s=40.0):
    return rec_from_loads(gait_load(duration_s), gait_load(duration_s, phase_s=0.55))


def test_clean_synthetic_walk_gives_strides():
    res = analyze(walking())
    assert len(res.strides) > 50
    assert np.allclose(res.strides.stride_time_s.median(), 1.1, atol=0.01)


def test_empty_file(tmp_path: Path):
    f = tmp_path / "empty.txt"
    f.write_text("")
    with pytest.raises(ValidationError):
        read_any(f, "gaitpdb")
    with pytest.raises(ValidationError):
        read_any(f)


def test_truncated_gaitpdb_row_is_dropped(tmp_path: Path):
    src = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet-gaitpdb" / "GaCo01_01.txt"
    if not src.exists():
        pytest.fail("gaitpdb recordings are missing from ../shared/data")
    text = src.read_text()[:200_000]
    f = tmp_path / "trunc.txt"
    f.write_text(text[: text.rfind("\t")])
    rec = read_any(f, "gaitpdb")
    assert rec.feet["L"].n_samples > 100
    analyze(rec)


def test_truncated_gaitndd_signal(tmp_path: Path):
    src = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet-gaitndd"
    if not src.exists():
        pytest.fail("gaitndd recordings are missing from ../shared/data")
    for ext in ("hea", "let", "rit"):
        data = (src / f"control1.{ext}").read_bytes()
        (tmp_path / f"control1.{ext}").write_bytes(data[: 30_000] if ext != "hea" else data)
    rec = read_any(tmp_path / "control1.hea")
    assert rec.meta["truncated"]
    res = analyze(rec)
    assert len(res.strides) > 10
    # the summary says so (the file holds 20,000 of the header's 90,000 samples)
    assert "truncated_file" in res.summary["flags"] and res.summary["reader_quality"]["truncated"] is True
    assert "truncated_file" not in analyze(read_any(src / "control1.hea")).summary["flags"]


def test_reader_quality_carries_counts_only():
    # a file's metadata may name the person (Moticon's "# name:" line); only the reader's counts reach the summary
    rec = walking(20.0)
    rec.meta.update({"name": "Jane Doe", "subject_n": 7, "notes_n": {"a": "x"}, "rows_dropped_n": 3,
                     "rows_dropped_by_reason_n": {"bad_columns": 3}, "truncated": False,
                     "dropped_samples_n": {"L": 2, "Jane Doe": 1}})
    assert analyze(rec).summary["reader_quality"] == {"rows_dropped_n": 3, "rows_dropped_by_reason_n": {"bad_columns": 3},
                                                      "truncated": False}


def test_all_nan_is_an_error():
    rec = rec_from_loads(np.full(1000, np.nan), np.full(1000, np.nan))
    with pytest.raises(ValidationError):
        analyze(rec)


def test_nan_gaps_are_flagged_and_strides_never_span_them():
    rec = walking()
    for f in rec.feet.values():
        f.pressure[1500:1800] = np.nan  # 3 s dropout
        f.pressure[2500:2503] = np.nan  # short dropout, interpolated
    res = analyze(rec)
    assert "dropped_samples_L" in res.summary["flags"]
    s = res.strides
    assert not ((s.heel_strike_s < 18.0) & (s.next_heel_strike_s > 15.0)).any()
    assert len(s) > 30


def test_saturated_channel_flagged():
    rec = walking()
    p = rec.feet["R"].pressure
    p[:, 3] = np.minimum(p[:, 3], 20.0)  # clipped at 20 kPa
    res = analyze(rec)
    assert "saturated_channel_R" in res.summary["flags"]
    assert len(res.strides) > 50


def test_standing_only_no_strides():
    rng = np.random.default_rng(1)
    t = np.arange(6000) / FS
    sway = 350 + 60 * np.sin(2 * np.pi * 0.3 * t) + rng.normal(0, 5, t.size)
    res = analyze(rec_from_loads(sway, 700 - sway))
    assert len(res.strides) == 0
    assert "no_walking" in res.summary["flags"] or "no_walking_bout" in res.summary["flags"]


def test_single_step_no_strides():
    load = np.zeros(3000)
    load[1000:1070] = gait_load(0.7)[:70]
    res = analyze(rec_from_loads(np.full(3000, 400.0), load))
    assert len(res.strides) == 0


def test_dropped_samples_in_reader_become_nan(tmp_path: Path):
    rows = [f"{i / 100:.4f}\t" + "\t".join(["10"] * 16) + "\t80\t80" for i in range(300) if i not in (100, 101)]
    f = tmp_path / "x.txt"
    f.write_text("\r\n".join(rows) + "\r\n")
    rec = read_any(f)
    assert rec.source_format == "gaitpdb"
    assert rec.feet["L"].n_samples == 300
    assert rec.feet["L"].missing.sum() == 2


def test_data_ending_mid_stance_keep_the_last_stride():
    # a walk cut 0.4 s into a stance: that heel strike still ends the previous stride (gaitndd records stop
    # mid-walk at 300 s); a stance cut after less than min_stance_ms (0.05 s) is not trusted
    n = int(round(40.0 * FS))  # the left stance starting at 39.6 s (36 strides of 1.1 s) runs past the end
    for cut_s, last_end_s in ((0.0, 39.6), (0.35, 38.5)):
        m = n - int(round(cut_s * FS))
        rec = rec_from_loads(gait_load(40.0)[:m], gait_load(40.0, phase_s=0.55)[:m])
        left = analyze(rec).strides.query("side == 'L'")
        assert left.next_heel_strike_s.max() == pytest.approx(last_end_s, abs=0.02)


# ---- one foot's insole dead or silent: the other foot walks alone, and noise never becomes strides ----
NDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet-gaitndd"


def control1_with_right(right: np.ndarray) -> Recording:
    rec = read_any(NDD / "control1.hea")
    rec.feet["R"].pressure[:, 0] = right
    return rec


@pytest.mark.parametrize("noise_adc", [1, 10])
def test_a_sensor_dead_from_the_start_lets_the_other_foot_walk_alone(noise_adc):
    # a right FSR that never worked reads its own noise for the whole record; its flat test, relative to its own
    # range, cannot see that, so the other foot's amplitude decides (bouts.DEAD_AMPLITUDE_FRACTION)
    n = read_any(NDD / "control1.hea").feet["R"].n_samples
    noise = np.random.default_rng(3).integers(-noise_adc, noise_adc + 1, n)
    res = analyze(control1_with_right(-1900.0 + noise))
    intact = analyze(read_any(NDD / "control1.hea")).strides
    left = res.strides[res.strides.side == "L"].reset_index(drop=True)
    assert len(left) == (intact.side == "L").sum() == 269
    pd.testing.assert_frame_equal(left[["heel_strike_s", "stride_time_s"]],
                                  intact[intact.side == "L"].reset_index(drop=True)[["heel_strike_s", "stride_time_s"]])
    assert (res.strides.side == "R").sum() == 0
    assert "flat_sensor_R" in res.summary["flags"]


def test_a_dead_sensor_at_the_adc_floor_invents_no_strides():
    # like als5.rit after it fails: -2048 .. -2045, three counts of noise at the floor, from the first sample
    n = read_any(NDD / "control1.hea").feet["R"].n_samples
    res = analyze(control1_with_right(-2048.0 + np.random.default_rng(4).integers(0, 4, n)))
    assert (res.strides.side == "R").sum() == 0
    assert (res.strides.side == "L").sum() == 269


def test_a_foot_without_any_data_is_flagged_not_an_error():
    # an insole that never sent a sample (all invalid / empty cells); the recording is still usable
    res = analyze(control1_with_right(np.full(90000, np.nan)))
    assert (res.strides.side == "L").sum() == 269
    assert "no_data_R" in res.summary["flags"]


def test_strides_where_the_other_foot_has_no_data_stand_alone():
    # the left insole sends its first sample 57.5 s into a 60 s walk (empty cells before): too late for a left
    # chain the right foot's could overlap, so the right foot's strides stand alone where the left has no data
    rec = walking(60.0)
    rec.feet["L"].pressure[: int(57.5 * FS)] = np.nan
    s = analyze(rec).strides
    assert (s.side == "L").sum() == 0
    right = s[s.side == "R"]
    assert len(right) >= 45 and (right.next_heel_strike_s <= 57.5).all()


def test_a_foot_whose_file_ends_early_lets_the_other_walk_on(tmp_path: Path):
    # als1.rit cut to its first 20,000 samples (67 s): the left foot's walking after that, broken by pauses into
    # several bouts, is kept as if the right foot's missing tail were NaN (before: 132 of 202 left strides lost)
    for ext in ("hea", "let", "rit"):
        data = (NDD / f"als1.{ext}").read_bytes()
        (tmp_path / f"als1.{ext}").write_bytes(data[:30_000] if ext == "rit" else data)
    res = analyze(read_any(tmp_path / "als1.hea"))
    intact = analyze(read_any(NDD / "als1.hea")).strides
    assert (res.strides.side == "L").sum() == (intact.side == "L").sum() == 202
    assert res.summary["strides_rejected_outside_bouts_n"] == 0
    assert "truncated_file" in res.summary["flags"]


def test_feet_in_different_units_are_not_compared_for_a_dead_sensor():
    # 1 % of the other foot's amplitude is a dead sensor only when both feet are in one unit
    rec = walking(40.0)
    r = rec.feet["R"]
    rec.feet["R"] = FootRecording("R", FS, 0.0, r.pressure * 0.01, "N", layout=KC16)
    assert (analyze(rec).strides.side == "R").sum() > 25
    rec.feet["R"] = FootRecording("R", FS, 0.0, r.pressure * 0.01, "kPa", layout=KC16)
    assert (analyze(rec).strides.side == "R").sum() == 0
