"""gaitndd validation: stride / stance / swing against the .ts references at 300 Hz and resampled to 100 Hz.

Run ``.venv/bin/python tests/test_analytics_gaitndd.py`` for the per-record table in docs/validation.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from insole_common.recording import FootRecording, Recording
from processing.analytics import analyze
from processing.analytics.validation import match_gaitndd
from processing.readers.gaitndd import read_gaitndd, read_gaitndd_ts

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet-gaitndd"
if not DATA.is_dir():  # CI has ../shared beside the repo: absence is a failure, not a skip
    raise RuntimeError(f"{DATA} is missing: the real recordings must sit beside the repository")


def records() -> list[str]:
    return [r for r in (DATA / "RECORDS").read_text().split() if (DATA / f"{r}.hea").is_file()]


def resampled(rec: Recording, fs_out: float) -> Recording:
    feet = {}
    for s, f in rec.feet.items():
        t_in = f.t_s
        t_out = np.arange(t_in[0], t_in[-1], 1 / fs_out)
        feet[s] = FootRecording(s, fs_out, float(t_in[0]), np.interp(t_out, t_in, f.pressure[:, 0])[:, None], f.pressure_unit,
                                channel_names=f.channel_names)
    return Recording(feet=feet, source_format=rec.source_format, meta=rec.meta)


def evaluate(fs: float | None) -> pd.DataFrame:
    rows = []
    for r in records():
        rec = read_gaitndd(DATA / f"{r}.hea")
        if fs is not None:
            rec = resampled(rec, fs)
        m = match_gaitndd(analyze(rec).strides, read_gaitndd_ts(DATA / f"{r}.ts"))
        m.insert(0, "record", r)
        rows.append(m)
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module", params=[None, 100.0], ids=["300Hz", "100Hz"])
def matched(request) -> pd.DataFrame:
    return evaluate(request.param)


def valid(m: pd.DataFrame) -> pd.DataFrame:
    """Reference rows that are strides (not stale repeats of a dead sensor, not pauses > 3.5 s)."""
    return m[m.reference_valid]


def test_dead_sensor_lets_the_other_foot_walk_alone():
    # als5.rit is flat at the ADC floor from 168 s; the left foot's strides after the pause at 170-178 s are kept
    res = analyze(read_gaitndd(DATA / "als5.hea"))
    assert "flat_sensor_R" in res.summary["flags"]
    left = res.strides[res.strides.side == "L"]
    assert (left.heel_strike_s > 180).sum() >= 90


def test_few_reference_rows_set_aside(matched):
    # stale rows (90: als5 right foot after its sensor died) and pauses > 3.5 s (15: als1, als3, als4, als5)
    assert (~matched.reference_valid).sum() <= 110


def test_share_of_reference_strides_matched(matched):
    assert valid(matched).matched.mean() >= 0.991  # regression floor (99.18 % at 300 Hz, 99.21 % at 100 Hz)
    assert matched.matched.mean() >= 0.980  # all rows, pauses and stale rows counted as misses (98.09 / 98.12 %)


def test_stride_time_mae_pooled(matched):
    assert np.nanmean(np.abs(valid(matched).stride_err_s)) * 1000 <= 3.1  # 2.64 ms at 300 Hz, 3.00 ms at 100 Hz


def test_stance_and_swing_mae(matched):
    v = valid(matched)
    assert np.nanmean(np.abs(v.stance_err_s)) * 1000 <= 15.5  # 14.79 / 15.09 ms
    assert np.nanmean(np.abs(v.swing_err_s)) * 1000 <= 15.5


def test_every_record_mostly_matched(matched):
    per = valid(matched).groupby("record").matched.mean()
    assert per.min() >= 0.95, per.sort_values().head()  # hunt5 is the weakest record (96.8 %)


@pytest.mark.xfail(reason="issue-3 target >= 99.5 % matched not reached: 99.18 % (300 Hz) / 99.21 % (100 Hz) of valid "
                          "reference strides; the misses are turn-around shuffles the reference counts as strides "
                          "(hunt5), strides the reference splits without any unloading in the signal (park4) and "
                          "partial touches; see docs/validation.md", strict=True)
def test_issue_target_matched(matched):
    assert valid(matched).matched.mean() >= 0.995


@pytest.mark.xfail(reason="issue-3 target stride-time MAE <= 2.5 ms not reached: 2.64 ms (300 Hz) / 3.00 ms (100 Hz); "
                          "the excess comes from two-stage loading edges where the reference picks the first stage in "
                          "some records and the second in others (als3 L, park1 R, als5, control5)", strict=True)
def test_issue_target_stride_time(matched):
    assert np.nanmean(np.abs(valid(matched).stride_err_s)) * 1000 <= 2.5


@pytest.mark.xfail(reason="issue-3 target stance / swing MAE <= 10 ms not reached: 14.8 / 14.7 ms (300 Hz), 15.1 / 15.0 ms "
                          "(100 Hz); mostly a constant per-record offset (hunt3, hunt4, park4): the authors' toe-off "
                          "definition is not recoverable from these records, see docs/validation.md", strict=True)
def test_issue_target_stance_swing(matched):
    v = valid(matched)
    assert np.nanmean(np.abs(v.stance_err_s)) * 1000 <= 10
    assert np.nanmean(np.abs(v.swing_err_s)) * 1000 <= 10


if __name__ == "__main__":
    for fs in (None, 100.0):
        m = evaluate(fs)
        v = valid(m)
        print(f"\n## gaitndd at {'300' if fs is None else int(fs)} Hz")
        g = v.groupby("record").agg(ref_n=("matched", "size"), matched_pct=("matched", lambda x: 100 * x.mean()),
                                    stride_mae_ms=("stride_err_s", lambda x: 1000 * np.nanmean(np.abs(x))),
                                    stance_mae_ms=("stance_err_s", lambda x: 1000 * np.nanmean(np.abs(x))),
                                    stance_bias_ms=("stance_err_s", lambda x: 1000 * np.nanmedian(x)),
                                    swing_mae_ms=("swing_err_s", lambda x: 1000 * np.nanmean(np.abs(x))))
        print(g.round(2).to_markdown() if hasattr(g, "to_markdown") and os.environ.get("MD") else g.round(2).to_string())
        print(f"pooled: matched {100 * v.matched.mean():.2f} % of {len(v)} valid reference strides "
              f"({100 * m.matched.mean():.2f} % of all {len(m)} rows; {len(m) - len(v)} set aside: stale or pause); "
              f"stride MAE {1000 * np.nanmean(np.abs(v.stride_err_s)):.2f} ms; "
              f"median per-record stride MAE {g.stride_mae_ms.median():.2f} ms; stance MAE {1000 * np.nanmean(np.abs(v.stance_err_s)):.2f} ms; "
              f"swing MAE {1000 * np.nanmean(np.abs(v.swing_err_s)):.2f} ms")
