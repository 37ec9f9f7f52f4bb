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


def test_share_of_reference_strides_matched(matched):
    assert matched.matched.mean() >= 0.965  # regression floor; issue target 0.995 is the xfail below


def test_stride_time_mae_pooled(matched):
    assert np.nanmean(np.abs(matched.stride_err_s)) * 1000 <= 4.5


def test_stance_and_swing_mae(matched):
    assert np.nanmean(np.abs(matched.stance_err_s)) * 1000 <= 17
    assert np.nanmean(np.abs(matched.swing_err_s)) * 1000 <= 17


def test_every_record_mostly_matched(matched):
    per = matched.groupby("record").matched.mean()
    assert per.min() >= 0.5, per.sort_values().head()  # als5 is the weakest record (54 %)


@pytest.mark.xfail(reason="issue-3 targets (<= 2.5 ms stride MAE, >= 99.5 % matched, <= 10 ms stance/swing) not reached yet; see docs/validation.md", strict=False)
def test_issue_targets(matched):
    assert matched.matched.mean() >= 0.995
    assert np.nanmean(np.abs(matched.stride_err_s)) * 1000 <= 2.5
    assert np.nanmean(np.abs(matched.stance_err_s)) * 1000 <= 10
    assert np.nanmean(np.abs(matched.swing_err_s)) * 1000 <= 10


if __name__ == "__main__":
    for fs in (None, 100.0):
        m = evaluate(fs)
        print(f"\n## gaitndd at {'300' if fs is None else int(fs)} Hz")
        g = m.groupby("record").agg(ref_n=("matched", "size"), matched_pct=("matched", lambda x: 100 * x.mean()),
                                    stride_mae_ms=("stride_err_s", lambda x: 1000 * np.nanmean(np.abs(x))),
                                    stance_mae_ms=("stance_err_s", lambda x: 1000 * np.nanmean(np.abs(x))),
                                    swing_mae_ms=("swing_err_s", lambda x: 1000 * np.nanmean(np.abs(x))))
        print(g.round(2).to_markdown() if hasattr(g, "to_markdown") and os.environ.get("MD") else g.round(2).to_string())
        print(f"pooled: matched {100 * m.matched.mean():.2f} % of {len(m)}; stride MAE {1000 * np.nanmean(np.abs(m.stride_err_s)):.2f} ms; "
              f"median per-record stride MAE {g.stride_mae_ms.median():.2f} ms; stance MAE {1000 * np.nanmean(np.abs(m.stance_err_s)):.2f} ms; "
              f"swing MAE {1000 * np.nanmean(np.abs(m.swing_err_s)):.2f} ms")
