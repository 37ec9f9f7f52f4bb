"""Toe off of each contact, sub-sample (step 4 / 5 of the method in :mod:`processing.analytics.events`): the
end of the unloading edge found on the rate of the load (every load), then for offset loads moved back to the
``offset_to_level_fraction`` crossing before that end (or an earlier rebound), and for zero-based loads
replaced by the crossing of ``to_level_fraction`` above the unloaded level. Indices are relative to the
caller's buffer; everything is vectorised over samples and contacts."""

from __future__ import annotations

import numpy as np

from processing.analytics.event_params import EventParams


def slope_toe_off(dx: np.ndarray, off_r: np.ndarray, next_on_r: np.ndarray, p: EventParams) -> np.ndarray:
    """From each off-crossing ``off_r`` (-1: contact still open, NaN toe off): the first rate ``dx`` above
    ``-to_slope_per_s`` (the fall has eased), before the next on-crossing and within the search window,
    interpolated linearly; half a sample before the off-crossing when there is none."""
    nd = dx.size
    # toe off: first i >= off-1 with dx[i] > -thr, before the next on
    nxt = np.arange(nd)
    nxt[~(dx > -p.to_slope_per_s)] = nd
    nxt = nxt[::-1]
    np.minimum.accumulate(nxt, out=nxt)
    nxt = nxt[::-1]
    has_off = off_r >= 0
    q = np.clip(off_r - 1, 0, nd - 1)
    k2 = nxt[q]
    del nxt
    ok2 = has_off & (k2 < nd) & (k2 >= 1) & (k2 < np.minimum(next_on_r, off_r + p.search_n))
    k2c = np.clip(k2, 1, nd - 1)
    e0, e1 = dx[k2c - 1], dx[k2c]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac2 = np.clip((-p.to_slope_per_s - e0) / (e1 - e0), 0.0, 1.0)
    frac2 = np.where(np.isfinite(frac2), frac2, 0.5)
    return np.where(ok2, k2c - 0.5 + frac2, np.where(has_off, off_r - 0.5, np.nan))


def offset_toe_off(xs: np.ndarray, v: np.ndarray, amp_s: np.ndarray, to_r: np.ndarray, on_r: np.ndarray,
                   off_r: np.ndarray, next_on_r: np.ndarray, p: EventParams) -> np.ndarray:
    """Toe off of offset loads (relative sub-sample indices): the unloading edge ends at ``to_r`` (rate eased)
    or at the first rebound after the last sample at or above ``on_fraction``, whichever is earlier; toe off
    is the last time before that end at which the load was ``offset_to_level_fraction`` amplitudes above its
    level at the end. A rebound must rise before the next contact (``next_on_r``), so only samples before it
    are read. Vectorised over samples and contacts."""
    n = xs.size
    has_off = (off_r >= 0) & np.isfinite(to_r)
    if not has_off.any():
        return to_r
    last_on = np.arange(n)
    last_on[~(v >= p.on_fraction)] = -1
    np.maximum.accumulate(last_on, out=last_on)
    q = np.clip(np.maximum(last_on[np.clip(off_r - 1, 0, n - 1)], on_r), 1, n - 1)
    del last_on
    # rebound: in each contact's window [q, end of edge), the first sample not above its predecessor whose next
    # `rebound_n` samples rise by >= the fraction (and lie before the next contact); per-contact windows (short)
    W = p.rebound_n
    lim = np.minimum(np.ceil(np.where(has_off, to_r, q)), next_on_r - W).astype(np.int64)  # exclusive
    span = np.clip(lim - q, 0, 2 * p.search_n)
    end = to_r
    L = int(span.max()) if span.size else 0
    if L > 0:
        cols = np.arange(L + W)
        idx = np.minimum(q[:, None] + cols[None, :], n - 1)
        X = xs[idx]
        ahead = X[:, 1 : L + 1].copy()  # max of the next W samples
        for i in range(2, W + 1):
            np.fmax(ahead, X[:, i : L + i], out=ahead)
        cur, ic = X[:, :L], idx[:, :L]
        with np.errstate(invalid="ignore"):
            flag = ahead - cur >= p.to_rebound_fraction * amp_s[ic]
            flag &= v[ic] < p.on_fraction
            flag &= cur <= xs[ic - 1]
        flag &= cols[None, :L] < span[:, None]
        hit = flag.any(axis=1)
        kn = q + np.argmax(flag, axis=1)
        end = np.where(has_off & hit & (kn < to_r), kn, to_r)
    # toe off: last crossing, before the end, of the level `offset_to_level_fraction` above the load at the end
    fin = has_off
    e = np.where(fin, end, 0.0)
    i0 = np.clip(np.floor(e).astype(np.int64), 0, n - 2)
    f0 = e - i0
    lvl = xs[i0] + (xs[i0 + 1] - xs[i0]) * f0 + p.offset_to_level_fraction * amp_s[i0]
    idx = np.clip(i0[:, None] - np.arange(p.edge_search_n)[None, :], 0, n - 1)  # samples at / before the end
    above = xs[idx] >= lvl[:, None]
    found = above.any(axis=1)
    k = np.argmax(above, axis=1)
    j = idx[np.arange(idx.shape[0]), k]  # last sample at or above the level
    j1 = np.minimum(j + 1, n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fr = (xs[j] - lvl) / (xs[j] - xs[j1])
    fr = np.clip(np.where(np.isfinite(fr), fr, 0.5), 0.0, 1.0)
    t = np.minimum(j + fr, e)
    return np.where(fin & found, t, np.where(fin, end, to_r))


def level_toe_off(xs: np.ndarray, lvl: np.ndarray, off_r: np.ndarray, next_on_r: np.ndarray, s0: int,
                  to: np.ndarray) -> np.ndarray:
    """Zero-based loads: the first crossing of the level ``lvl`` (per sample) from each off-crossing ``off_r``
    on, before the next on-crossing, interpolated linearly and shifted by ``s0``; ``to`` where there is none."""
    has_off = off_r >= 0
    nxt2 = np.arange(xs.size)
    nxt2[~(xs < lvl)] = xs.size
    nxt2 = nxt2[::-1]
    np.minimum.accumulate(nxt2, out=nxt2)
    nxt2 = nxt2[::-1]
    w = nxt2[np.clip(off_r, 0, xs.size - 1)]
    del nxt2
    okw = has_off & (w < xs.size) & (w >= 1) & (w < next_on_r)
    w = np.clip(w, 1, xs.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fw = np.clip((xs[w - 1] - lvl[w - 1]) / ((xs[w - 1] - lvl[w - 1]) - (xs[w] - lvl[w])), 0.0, 1.0)
    return np.where(okw & np.isfinite(fw), w - 1 + fw + s0, to)
