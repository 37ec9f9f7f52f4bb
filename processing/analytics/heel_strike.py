"""Heel strike (initial contact) of each contact, sub-sample (step 4 / 5 of the method in
:mod:`processing.analytics.events`): the onset of the loading edge found on the rate of the load (every
load), replaced for zero-based loads by the crossing of ``zero_level_fraction`` above the unloaded level.
Indices are relative to the caller's buffer; everything is vectorised over samples and contacts."""

from __future__ import annotations

import numpy as np

from processing.analytics.event_params import EventParams


def slope_heel_strike(dx: np.ndarray, on_r: np.ndarray, floor_r: np.ndarray, p: EventParams) -> np.ndarray:
    """Walking back from each on-crossing ``on_r``: where the rate ``dx`` (amplitudes per second, ``dx[i]`` at
    time i + 0.5) last was below ``hs_slope_per_s``, not before ``floor_r`` (previous off-crossing or search
    window), interpolated linearly; half a sample before the on-crossing when there is no such rate."""
    nd = dx.size
    # heel strike: last i < on with dx[i] < thr, not before previous off / search window
    below = np.arange(nd)
    below[~(dx < p.hs_slope_per_s)] = -1
    np.maximum.accumulate(below, out=below)
    kk = below[np.clip(on_r - 1, 0, nd - 1)]
    del below
    ok = (kk >= floor_r) & (kk >= 0) & (kk + 1 < nd)
    kk = np.where(ok, kk, np.clip(on_r - 1, 0, nd - 2))
    d0, d1 = dx[kk], dx[kk + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip((p.hs_slope_per_s - d0) / (d1 - d0), 0.0, 1.0)
    frac = np.where(np.isfinite(frac), frac, 0.5)
    return np.where(ok, kk + 0.5 + frac, on_r - 0.5)


def level_heel_strike(xs: np.ndarray, lvl: np.ndarray, on_r: np.ndarray, floor_r: np.ndarray, s0: int,
                      hs: np.ndarray) -> np.ndarray:
    """Zero-based loads: the last crossing of the level ``lvl`` (per sample) up to each on-crossing ``on_r``, not
    before ``floor_r``, interpolated linearly and shifted by ``s0``; ``hs`` where there is none."""
    under = np.arange(xs.size)
    under[~(xs < lvl)] = -1
    np.maximum.accumulate(under, out=under)
    u = under[np.clip(on_r, 0, xs.size - 1)]
    del under
    okz = (u >= floor_r) & (u >= 0) & (u + 1 < xs.size)
    u = np.clip(u, 0, xs.size - 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        fz = np.clip((lvl[u] - xs[u]) / (xs[u + 1] - xs[u]), 0.0, 1.0)
    return np.where(okz & np.isfinite(fz), u + fz + s0, hs)
