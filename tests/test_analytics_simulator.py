"""Simulator ground truth: events within 10 ms, stride length within 3 %, lateral COP shift within 0.02 fw.

"""

from __future__ import annotations

import numpy as np

import simulator as sim
from processing.analytics import analyze
from processing.analytics.validation import event_errors


def _walk(**kw):
    params = sim.SimulationParams(schedule=(("standing", 5.0), ("walking", 60.0), ("standing", 5.0)), **kw)
    return sim.simulate(params, seed=3)


def test_events_within_10_ms():
    out = _walk()
    s = analyze(out.recording).strides
    ev = out.truth.events
    for side in "LR":
        d, t = s[s.side == side], ev[ev.side == side]
        hs = event_errors(d.heel_strike_s.to_numpy(), t.heel_strike_s.to_numpy(), tol_s=0.1)
        to = event_errors(d.toe_off_s.to_numpy(), t.toe_off_s.to_numpy(), tol_s=0.1)
        assert np.isfinite(hs).mean() >= 0.9 and np.isfinite(to).mean() >= 0.9
        assert np.nanmax(np.abs(hs)) <= 0.010 and np.nanmax(np.abs(to)) <= 0.010


def test_stride_length_within_3_percent():
    out = _walk(stride_length_m=1.2)
    s = analyze(out.recording).strides
    ref = out.truth.events.stride_length_m.mean()
    assert abs(s.stride_length_m.mean() / ref - 1) <= 0.03


def test_no_strides_outside_walking_bouts():
    out = _walk()
    s = analyze(out.recording).strides
    walk = out.truth.bouts[out.truth.bouts.activity.isin(["walking", "turning", "shuffling"])]
    inside = np.zeros(len(s), bool)
    for a, b in zip(walk.start_s, walk.end_s, strict=True):
        inside |= (s.heel_strike_s >= a - 0.5) & (s.next_heel_strike_s <= b + 0.5)
    assert inside.all()


def test_lateral_shift_recovered():
    base = analyze(_walk(lateral_shift_fw=0.0).recording).strides
    shifted = analyze(_walk(lateral_shift_fw=0.08).recording).strides
    delta = shifted.cop_ml_mean_fw.mean() - base.cop_ml_mean_fw.mean()
    assert abs(delta - 0.08) <= 0.02
