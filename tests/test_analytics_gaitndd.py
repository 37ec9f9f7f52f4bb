"""gaitndd validation: stride / stance / swing against the .ts references at 300 Hz and resampled to 100 Hz.

Run ``.venv/bin/python tests/test_analytics_gaitndd.py`` for the per-record table in docs/validation.md and the
round-7 figures of the tuning and held-out halves (left foot).
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


def test_share_of_all_rows_matched(matched):
    # all rows, pauses and stale rows counted as misses (98.49 % at 300 Hz, 98.50 % at 100 Hz)
    assert matched.matched.mean() >= 0.983


def test_stride_time_mae_pooled(matched):
    assert np.nanmean(np.abs(valid(matched).stride_err_s)) * 1000 <= 3.1  # 2.65 ms at 300 Hz, 3.02 ms at 100 Hz


def test_every_record_mostly_matched(matched):
    per = valid(matched).groupby("record").matched.mean()
    assert per.min() >= 0.98, per.sort_values().head()  # als4 is the weakest record (98.5 %)


def test_every_record_stance_within_20_ms(matched):
    per = valid(matched).groupby("record").stance_err_s.apply(lambda e: np.nanmean(np.abs(e)) * 1000)
    assert per.max() <= 20, per.sort_values().tail()  # park4 is the weakest record (16.3 / 18.5 ms)


def test_issue_target_matched(matched):
    # issue-3 target: >= 99.5 % of the valid reference strides (99.58 % at 300 Hz, 99.59 % at 100 Hz)
    assert valid(matched).matched.mean() >= 0.995


#: round 7 (docs/validation.md): the 20 shared records split in advance into a tuning half and a held-out half;
#: rules are tuned on the first and reported on the second (issue 19: "tune on half, report on the other half")
TUNING_RECORDS = ("als1", "als2", "control1", "control2", "hunt1", "hunt2", "hunt3", "park1", "park2", "park3")
HELD_OUT_RECORDS = ("als3", "als4", "als5", "control3", "control4", "control5", "hunt4", "hunt5", "park4", "park5")
#: held-out half, left foot (the issue's scoring), as measured in round 7 at 300 / 100 Hz: pooled stride-time MAE (ms),
#: share of valid reference strides matched (%) and each record's stride-time MAE (ms)
HELD_OUT_LEFT = {
    "300Hz": (3.81, 99.49, {"als3": 14.70, "als4": 1.86, "als5": 6.15, "control3": 1.35, "control4": 1.12,
                            "control5": 5.19, "hunt4": 2.66, "hunt5": 1.32, "park4": 1.31, "park5": 3.81}),
    "100Hz": (4.20, 99.49, {"als3": 14.78, "als4": 2.29, "als5": 6.84, "control3": 1.52, "control4": 1.36,
                            "control5": 5.62, "hunt4": 2.94, "hunt5": 2.22, "park4": 1.68, "park5": 4.20}),
}


def held_out_left(m: pd.DataFrame) -> pd.DataFrame:
    v = valid(m)
    return v[(v.side == "L") & v.record.isin(HELD_OUT_RECORDS)]


def test_split_is_the_whole_shared_set():
    assert sorted(TUNING_RECORDS + HELD_OUT_RECORDS) == sorted(records())
    assert not set(TUNING_RECORDS) & set(HELD_OUT_RECORDS)


def test_held_out_pooled_stride_time_and_matching(request, matched):
    # what counts since issue 19 (the pooled 2.5 ms target of issue 3 is retired): the held-out records' pooled
    # stride-time MAE and matched share, left foot; measured values plus a small margin (0.1 ms, 0.1 points)
    mae_ms, matched_pct, _ = HELD_OUT_LEFT[request.node.callspec.id]
    h = held_out_left(matched)
    assert np.nanmean(np.abs(h.stride_err_s)) * 1000 <= mae_ms + 0.1
    assert 100 * h.matched.mean() >= matched_pct - 0.1


def test_no_held_out_record_worse(request, matched):
    # no held-out record's left stride-time MAE more than 0.5 ms above its round-7 value (the rejected per-foot
    # stage rule of round 7 took als3 from 14.70 to 17.95 ms)
    _, _, before = HELD_OUT_LEFT[request.node.callspec.id]
    per = held_out_left(matched).groupby("record").stride_err_s.apply(lambda e: np.nanmean(np.abs(e)) * 1000)
    worse = {r: round(per[r], 2) for r in HELD_OUT_RECORDS if per[r] > before[r] + 0.5}
    assert not worse, worse


def test_issue_target_stance_swing(matched):
    # issue-3 target: stance and swing MAE <= 10 ms (6.49 / 6.43 ms at 300 Hz, 7.56 / 7.50 ms at 100 Hz)
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
              f"median per-record stride MAE {g.stride_mae_ms.median():.2f} ms; "
              f"stance MAE {1000 * np.nanmean(np.abs(v.stance_err_s)):.2f} ms; "
              f"swing MAE {1000 * np.nanmean(np.abs(v.swing_err_s)):.2f} ms")
        for half, names in (("tuning", TUNING_RECORDS), ("held-out", HELD_OUT_RECORDS)):
            h = v[(v.side == "L") & v.record.isin(names)]
            e_ms = 1000 * h.stride_err_s
            print(f"{half} half, left foot: stride MAE {np.nanmean(np.abs(e_ms)):.2f} ms, matched "
                  f"{100 * h.matched.mean():.2f} % of {len(h)}; strides > 20 ms too long / too short: {(e_ms > 20).sum()} / "
                  f"{(e_ms < -20).sum()}")
