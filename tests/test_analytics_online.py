"""The online (low-latency) stride detector against the final batch analysis on simulated walks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insole_common.errors import ValidationError
from processing.analytics import analyze
from processing.analytics.online import OnlineStrideDetector, _percentiles
from simulator import SimulationParams, simulate

TOLERANCE_S = 0.020


def live_strides(foot, chunks) -> pd.DataFrame:
    """Feed one foot's load (the sum over its channels) in chunks of the given sizes."""
    load = foot.pressure.sum(axis=1)
    det = OnlineStrideDetector(sampling_rate_hz=foot.sample_rate_hz, t0_s=foot.t0_s)
    out, pos = [], 0
    for n in chunks:
        if pos >= load.size:
            break
        out += det.feed(load[pos : pos + n])
        pos += n
    assert pos >= load.size
    return pd.DataFrame(out, columns=["heel_strike_s", "toe_off_s", "next_heel_strike_s", "stride_time_s",
                                      "stance_time_s", "swing_time_s"])


def worst_event_error_s(live: pd.DataFrame, final: pd.DataFrame) -> np.ndarray:
    """Per live stride: the largest |live - final| of heel strike, toe off and next heel strike, against the
    final stride with the nearest heel strike."""
    fh = final["heel_strike_s"].to_numpy()
    j = np.abs(fh[None, :] - live["heel_strike_s"].to_numpy()[:, None]).argmin(axis=1)
    cols = ["heel_strike_s", "toe_off_s", "next_heel_strike_s"]
    return np.abs(live[cols].to_numpy() - final[cols].to_numpy()[j]).max(axis=1)


@pytest.fixture(scope="module")
def straight_walk():
    return simulate(SimulationParams(schedule=(("standing", 3.0), ("walking", 90.0)), imu=True), seed=4)


def test_the_strides_do_not_depend_on_how_the_samples_are_chunked(straight_walk) -> None:
    """The service feeds a foot batch by batch, or several batches at once under load (and its helper
    process groups them differently again): every chunking gives the very same strides."""
    rng = np.random.default_rng(11)
    for foot in straight_walk.recording.feet.values():
        ref = live_strides(foot, [50] * 10_000)
        assert len(ref) > 60
        for chunks in ([1] * 10_000_000, [300] * 10_000, rng.integers(1, 700, 10_000).tolist(), [10**9]):
            pd.testing.assert_frame_equal(live_strides(foot, chunks), ref, check_exact=True)


@pytest.mark.parametrize("chunking", ["batches", "random"])
def test_every_live_stride_within_20_ms_of_the_final_one(straight_walk, chunking) -> None:
    final = analyze(straight_walk.recording).strides
    rng = np.random.default_rng(3)
    for side, foot in straight_walk.recording.feet.items():
        chunks = [50] * 10_000 if chunking == "batches" else rng.integers(1, 300, 10_000).tolist()
        live = live_strides(foot, chunks)
        mine = final[final["side"] == side]
        err = worst_event_error_s(live, mine)
        print(f"{side}: {len(live)} live / {len(mine)} final strides, worst event error {err.max() * 1000:.2f} ms")
        assert len(live) >= 0.95 * len(mine) - 2  # all but the warm-up (levels need 2 s of data)
        assert err.max() <= TOLERANCE_S
        np.testing.assert_allclose(live["stride_time_s"], live["next_heel_strike_s"] - live["heel_strike_s"])


def test_mixed_activities_mostly_agree_and_nothing_is_invented() -> None:
    sim = simulate(SimulationParams(duration_s=240.0, imu=True), seed=2)  # walk, turn, stand, shuffle, sit, ...
    final = analyze(sim.recording).strides
    for side, foot in sim.recording.feet.items():
        live = live_strides(foot, [50] * 10_000)
        err = worst_event_error_s(live, final[final["side"] == side])
        assert len(live) >= 0.9 * (final["side"] == side).sum()
        # after a turn or a stop the trailing levels lag behind: a few strides may differ, never most
        assert np.median(err) < 0.002 and (err <= TOLERANCE_S).mean() >= 0.95, np.sort(err)[-5:]


def test_no_stride_spans_missing_samples(straight_walk) -> None:
    foot = straight_walk.recording.feet["L"]
    load = foot.pressure.sum(axis=1).copy()
    gap = slice(3000, 3100)  # one second lost
    load[gap] = np.nan
    det = OnlineStrideDetector(sampling_rate_hz=100.0, t0_s=foot.t0_s)
    strides = [s for k in range(0, load.size, 50) for s in det.feed(load[k : k + 50])]
    gap_s = (foot.t0_s + gap.start / 100.0, foot.t0_s + gap.stop / 100.0)
    assert strides and not [s for s in strides if s.heel_strike_s < gap_s[1] and s.next_heel_strike_s > gap_s[0]]
    assert any(s.heel_strike_s > gap_s[1] for s in strides)  # and walking on after the gap is seen again


def test_no_steps_no_strides() -> None:
    rng = np.random.default_rng(0)
    standing = 400.0 + rng.normal(0, 2.0, 3000)  # loaded, never unloaded
    for load in (standing, np.zeros(3000), np.full(3000, np.nan)):
        det = OnlineStrideDetector(sampling_rate_hz=100.0)
        assert [s for k in range(0, 3000, 50) for s in det.feed(load[k : k + 50])] == []
        assert det.strides_n == 0


def test_one_step_is_not_a_stride() -> None:
    load = np.zeros(1000)
    load[400:460] = 500.0  # a single contact: a stride needs the next heel strike
    det = OnlineStrideDetector(sampling_rate_hz=100.0)
    assert det.feed(load) == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        OnlineStrideDetector(sampling_rate_hz=0.0)


@pytest.mark.parametrize("n", [4, 5, 21, 199, 200, 1000])
def test_the_level_percentiles_are_numpys(n) -> None:
    # the detector's levels come from one partial sort with ranks cached per window size; they must be
    # np.percentile's (linear) for full and short windows alike, including where the upper rank is the last
    rng = np.random.default_rng(n)
    for low, high in ((5.0, 97.0), (0.0, 100.0), (50.0, 99.9)):
        for _ in range(3):
            w = rng.normal(300.0, 100.0, n)
            assert np.allclose(_percentiles(w, low, high), np.percentile(w, [low, high]), rtol=0, atol=1e-9)
