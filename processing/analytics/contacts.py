"""Contacts by hysteresis on the normalised load (step 3 of the method in :mod:`processing.analytics.events`),
and which of them start a usable stride."""

from __future__ import annotations

import numpy as np

from processing.analytics.event_params import EventParams

_NO_INDEX = np.zeros(0, dtype=np.int64)


def _partial_swings(st: np.ndarray, v: np.ndarray, p: EventParams, final: bool) -> None:
    """Set the hysteresis state ``st`` to swing over runs of at least ``partial_swing_n`` samples where the
    normalised load ``v`` stays below ``on_fraction`` without reaching ``off_fraction`` (in place). A run still
    open at the end of a non-final span is left alone (later data may lengthen it)."""
    low = v < p.on_fraction
    d = np.diff(np.r_[0, low.view(np.int8), 0])
    a, b = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    long_ = (b - a) >= p.partial_swing_n
    if not final:
        long_ &= b < v.size
    a, b = a[long_], b[long_]
    if a.size == 0:
        return
    lowest = np.fmin.reduceat(v, np.c_[a, np.minimum(b, v.size - 1)].ravel())[::2]
    lowest = np.where(b >= v.size, np.fmin(lowest, v[-1]), lowest)  # (reduceat stops one short at the end)
    for s_, e_ in zip(a[lowest >= p.off_fraction], b[lowest >= p.off_fraction], strict=True):  # runs (a few per minute)
        st[s_:e_] = 0.0


def contact_crossings(v: np.ndarray, cap_s: np.ndarray, p: EventParams, *, start: int, state0: float,
                      final: bool) -> tuple[np.ndarray, np.ndarray]:
    """Absolute samples where the hysteresis state turns to contact (``on``) and to swing (``off``), from the
    normalised load ``v`` and the gait-capable flags ``cap_s`` of the samples from absolute ``start`` on;
    ``state0`` is the state just before ``start`` (0 = swing, NaN = unknown). Outside gait-capable data the
    foot counts as in swing."""
    # hysteresis state from `start`: forward-fill the last threshold crossing
    st = np.full(v.size + 1, np.nan)
    st[0] = state0
    st[1:][v > p.on_fraction] = 1.0
    st[1:][v < p.off_fraction] = 0.0
    st[1:][~cap_s] = 0.0
    if not p.zero_based and p.partial_swing_n > 0:
        _partial_swings(st[1:], v, p, final)
    fill = np.arange(st.size)
    fill[np.isnan(st)] = 0
    np.maximum.accumulate(fill, out=fill)
    st = st[fill]
    del fill
    prev, cur = st[:-1], st[1:]
    on = np.flatnonzero((prev == 0) & (cur == 1)) + start  # absolute
    off = np.flatnonzero((prev == 1) & (cur == 0)) + start
    del st, prev, cur
    return on, off


def find_contacts(v: np.ndarray, cap_s: np.ndarray, p: EventParams, *, start: int, state0: float, horizon: int,
             final: bool) -> tuple[np.ndarray, np.ndarray]:
    """Contacts (absolute ``on``, ``off`` samples; ``off`` = -1 while open) of the samples from ``start`` on
    (see :func:`contact_crossings`): short swings merged, short contacts dropped, only results up to the
    absolute ``horizon`` (the end of the data when ``final``)."""
    on, off = contact_crossings(v, cap_s, p, start=start, state0=state0, final=final)
    if on.size == 0:
        return _NO_INDEX, _NO_INDEX
    # pair each on with the next off (open contact: off = -1)
    k = np.searchsorted(off, on, side="right")
    off_p = np.where(k < off.size, off[np.minimum(k, max(off.size - 1, 0))] if off.size else -1, -1)
    # several ons before one off cannot happen (state machine); keep unique
    # merge short swings
    gap = on[1:] - np.where(off_p[:-1] >= 0, off_p[:-1], horizon)
    short = (gap < p.min_swing_n) & (off_p[:-1] >= 0)
    keep_on = np.r_[True, ~short]
    keep_off = np.r_[~short, True]
    on_m, off_m = on[keep_on], off_p[keep_off]
    # a trailing off whose following swing may still be short is open unless final
    if not final and off_m.size and off_m[-1] >= 0 and horizon - off_m[-1] < p.min_swing_n:
        off_m = off_m.copy()
        off_m[-1] = -1
    dur = np.where(off_m >= 0, off_m, horizon) - on_m
    valid = dur >= p.min_stance_n
    if final:
        # a contact still open when the data end starts no stride (no toe off), but its heel strike
        # ends the previous one (gaitndd records stop mid-walk at 300 s)
        valid[:-1] &= off_m[:-1] >= 0
    on_m, off_m = on_m[valid], off_m[valid]
    return on_m, off_m


def usable(xs: np.ndarray, cap_s: np.ndarray, on_r: np.ndarray, off_r: np.ndarray, end_r: int) -> np.ndarray:
    """Per contact (relative indices ``on_r``, ``off_r``; ``off_r`` = -1 while open; ``end_r`` the relative
    horizon): whether the stride it starts (to the next on) has no missing sample left after gap filling and
    lies in gait-capable data."""
    bad = np.isnan(xs)
    bad |= ~cap_s
    cbad = np.zeros(bad.size + 1, dtype=np.int64)
    np.cumsum(bad, out=cbad[1:])
    del bad
    seg_end = np.minimum(np.r_[on_r[1:], np.where(off_r[-1:] >= 0, off_r[-1:], end_r)] + 1, xs.size)
    seg_start = np.maximum(on_r - 1, 0)
    ok_c = (cbad[seg_end] - cbad[seg_start]) == 0
    return ok_c
