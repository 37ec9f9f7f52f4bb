"""Contacts and their heel strikes / toe offs in a span of a (possibly still growing) load signal: the
detector core that :class:`processing.analytics.events.LoadEventDetector` and ``FootEngine`` (pipeline.py)
run. The steps of the method (docstring of :mod:`processing.analytics.events`) live in levels.py, contacts.py,
heel_strike.py and toe_off.py; this module fills short gaps, computes the load's rates and puts them together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from processing.analytics.contacts import find_contacts, usable
from processing.analytics.event_params import EventParams
from processing.analytics.heel_strike import level_heel_strike, slope_heel_strike
from processing.analytics.levels import BlockLevels
from processing.analytics.toe_off import level_toe_off, offset_toe_off, slope_toe_off


@dataclass
class SpanResult:
    #: per contact (absolute indices): on_i, off_i (int; off_i = -1 while open), hs_i, to_i (float, sub-sample)
    contacts: dict[str, np.ndarray]
    #: absolute sample index up to which results are final
    horizon: int
    #: filled load (short gaps interpolated) for the buffer, and per-sample amplitude
    x: np.ndarray



def _no_contacts() -> dict[str, np.ndarray]:
    empty = {k: np.zeros(0, dtype=np.int64 if k.endswith("n_i") or k in ("on_i", "off_i") else float)
             for k in ("on_i", "off_i", "hs_i", "to_i")}
    empty["ok"] = np.zeros(0, dtype=bool)
    return empty


def fill_short_gaps(x: np.ndarray, max_gap_n: int) -> np.ndarray:
    """Linearly interpolate NaN runs of at most ``max_gap_n`` samples between two valid samples."""
    nan = np.isnan(x)
    if not nan.any() or nan.all():
        return x
    y = x.copy()
    d = np.diff(np.r_[0, nan.view(np.int8), 0])
    starts, ends = np.where(d == 1)[0], np.where(d == -1)[0]
    keep = (ends - starts <= max_gap_n) & (starts > 0) & (ends < len(x))
    if keep.any():
        idx = np.concatenate([np.arange(s, e) for s, e in zip(starts[keep], ends[keep], strict=True)])
        valid = np.where(~nan)[0]
        y[idx] = np.interp(idx, valid, x[valid])
    return y


def edge_rates(xs: np.ndarray, amp_s: np.ndarray, p: EventParams) -> np.ndarray:
    """Rate of the load in amplitudes per second: ``dx[i]`` over samples i-h .. i+1+h (``h = slope_half_n``;
    the first / last h rates over one sample), at relative time i + 0.5."""
    nd = xs.size - 1
    h = p.slope_half_n
    dx = np.full(nd, np.nan)  # dx[i]: rate over samples i-h .. i+1+h, at relative time i + 0.5
    if nd > 2 * h:
        np.subtract(xs[1 + 2 * h :], xs[: xs.size - 1 - 2 * h], out=dx[h : nd - h])
        if h:  # the first / last h rates use the one-sample difference
            dx[:h] = xs[1 : h + 1] - xs[:h]
            dx[nd - h :] = xs[nd - h + 1 :] - xs[nd - h : nd]
            dx[h : nd - h] /= 2 * h + 1
    dx *= p.fs
    with np.errstate(invalid="ignore", divide="ignore"):
        dx /= amp_s[:-1]
    return dx


class SpanDetector:
    """Contacts in a span of a (possibly still growing) load signal.

    Keeps the per-block levels it has computed (``levels``, by absolute block number), so a caller may feed
    the signal piecewise (a span of a longer buffer, from absolute sample ``abs0``).
    """

    def __init__(self, p: EventParams) -> None:
        self.p = p
        self.levels = BlockLevels(p)

    def run(self, x_raw: np.ndarray, *, abs0: int, start: int, state0: float, final: bool) -> SpanResult:
        """Detect contacts in ``x_raw`` (absolute samples ``abs0 ..``), state machine from absolute ``start``.

        ``state0`` is the contact state just before ``start`` (0 = swing, NaN = unknown).
        Returns contacts whose on-crossing is at or after ``start`` and before the horizon.
        """
        p = self.p
        n_abs = abs0 + x_raw.size
        x = fill_short_gaps(x_raw, p.max_gap_n)
        self.levels.update(x, abs0, n_abs, final)
        horizon = n_abs if final else max(self.levels.last_final_block(n_abs) * p.block_n, 0)
        if horizon <= start:
            return SpanResult(_no_contacts(), horizon, x)
        s0 = max(start - p.search_n, abs0)  # context for the backward heel-strike search
        per_sample = self.levels.per_sample(s0, horizon)
        if per_sample is None:
            return SpanResult(_no_contacts(), horizon, x)
        lo_s, amp_s, cap_s = per_sample
        xs = x[s0 - abs0 : horizon - abs0]
        v = xs - lo_s
        with np.errstate(invalid="ignore", divide="ignore"):
            v /= amp_s
        on_m, off_m = find_contacts(v[start - s0 :], cap_s[start - s0 :], p, start=start, state0=state0,
                                    horizon=horizon, final=final)
        if on_m.size == 0:
            return SpanResult(_no_contacts(), horizon, x)
        if p.zero_based:
            v = None  # (offset loads need it for the toe off)
        # ---- sub-sample events, relative to s0 ----
        dx = edge_rates(xs, amp_s, p)
        on_r = on_m - s0
        prev_off_r = np.r_[-1, np.where(off_m[:-1] >= 0, off_m[:-1] - s0, -1)]
        floor_r = np.maximum(on_r - p.search_n, prev_off_r)  # heel strike: not before previous off / search window
        off_r = np.where(off_m >= 0, off_m - s0, -1)
        next_on_r = np.r_[on_r[1:], horizon - s0]
        hs = slope_heel_strike(dx, on_r, floor_r, p) + s0
        to = slope_toe_off(dx, off_r, next_on_r, p) + s0
        del dx
        if not p.zero_based:
            to = offset_toe_off(xs, v, amp_s, to - s0, on_r, off_r, next_on_r, p) + s0
        del v
        ok_c = usable(xs, cap_s, on_r, off_r, horizon - s0)
        if p.zero_based:
            # a true zero exists: contact begins / ends where the load leaves / returns to a small
            # fraction of the amplitude above the unloaded level (sub-sample linear interpolation)
            hs_lvl = lo_s + p.zero_level_fraction * amp_s
            hs = level_heel_strike(xs, hs_lvl, on_r, floor_r, s0, hs)
            to_lvl = hs_lvl if p.to_level_fraction == p.zero_level_fraction else lo_s + p.to_level_fraction * amp_s
            to = level_toe_off(xs, to_lvl, off_r, next_on_r, s0, to)
        contacts = {"on_i": on_m.astype(np.int64), "off_i": off_m.astype(np.int64), "hs_i": hs, "to_i": to, "ok": ok_c}
        return SpanResult(contacts, horizon, x)
