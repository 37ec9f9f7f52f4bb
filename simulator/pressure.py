"""Spread a foot's load over the sensors of a layout so that the COP lands where intended.

The load is carried by the rearfoot and the forefoot, the midfoot taking a small share in mid-stance (the arch
bears little: :func:`region_weights`); so a COP in the middle of the foot is the balance of a loaded heel and a
loaded forefoot, not a load under the arch, and peak pressures are highest under the heel and the metatarsal
heads / hallux, lowest under the midfoot (Putti et al. 2007, docs/simulator.md). Regions are those of the one
geometric rule (:mod:`insole_common.layouts`). Each sensor's prior share is its region's weight spread over the
region's sensors by a Gaussian kernel around the region's centre of load and the intended medial-lateral COP,
exponentially tilted (``w_i ∝ k_i · exp(λ · x_i)``, λ solved per sample by Newton's method) so that
``centre_of_pressure(layout, pressure)`` equals the intended COP to 1e-9 whenever the
target lies inside the sensors' convex hull. Targets outside a slightly shrunken hull
are first clipped medial-laterally (and anterior-posteriorly) into it; the truth tables
always report the COP actually realised.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull

from insole_common.layouts import REGIONS, SensorLayout
from simulator.consts import (
    FOREFOOT_LOAD_CENTRE_FL,
    HEEL_LOAD_CENTRE_FL,
    KERNEL_SIGMA_AP,
    KERNEL_SIGMA_ML,
    MIDFOOT_LOAD_CENTRE_FL,
    MIDFOOT_SHARE_MAX,
)

#: targets are kept this far inside the hull: fraction of the local medial-lateral width, and foot lengths
HULL_ML_MARGIN = 0.03
HULL_AP_MARGIN = 0.02
NEWTON_TOL = 1e-9
NEWTON_MAX_ITER = 60
WARM_START_STEP = 8
#: finish with a linear reweighting once it changes no share by more than this fraction (keeps shares > 0)
LINEAR_FINISH_MAX_CHANGE = 0.5


def clip_to_hull(layout: SensorLayout, ap: np.ndarray, ml: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move COP targets inside the shrunken convex hull of the layout's sensors."""
    pts = np.column_stack([layout.ap_array, layout.ml_array])
    hull = ConvexHull(pts)
    ap = np.clip(ap, pts[:, 0].min() + HULL_AP_MARGIN, pts[:, 0].max() - HULL_AP_MARGIN)
    n_ap, n_ml, c = hull.equations.T  # inside: n_ap*ap + n_ml*ml + c <= 0
    bound = (-c[None, :] - n_ap[None, :] * ap[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        limit = bound / n_ml[None, :]
    upper = np.where(n_ml[None, :] > 1e-12, limit, np.inf).min(axis=1)
    lower = np.where(n_ml[None, :] < -1e-12, limit, -np.inf).max(axis=1)
    width = np.maximum(upper - lower, 0.0)
    lo = lower + HULL_ML_MARGIN * width
    hi = upper - HULL_ML_MARGIN * width
    return ap, np.clip(ml, lo, hi)


def region_weights(ap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Share of the load on the rearfoot, midfoot and forefoot for an intended AP COP, and the forefoot's centre of
    load: the midfoot's share rises to ``MIDFOOT_SHARE_MAX`` half-way between the heel and the forefoot centres and
    the rearfoot and forefoot shares balance the rest so that the mean of the three centres is ``ap``."""
    c_h, c_m = HEEL_LOAD_CENTRE_FL, MIDFOOT_LOAD_CENTRE_FL
    c_f = np.maximum(FOREFOOT_LOAD_CENTRE_FL, ap)  # push-off: the load rolls onto the toes
    w_m = np.clip(MIDFOOT_SHARE_MAX * 4.0 * (ap - c_h) * (c_f - ap) / (c_f - c_h) ** 2, 0.0, MIDFOOT_SHARE_MAX)
    w_f = np.clip((ap - w_m * c_m - (1.0 - w_m) * c_h) / (c_f - c_h), 0.0, 1.0 - w_m)
    return 1.0 - w_m - w_f, w_m, w_f, c_f


def _log_prior(layout: SensorLayout, ap: np.ndarray, ml: np.ndarray) -> np.ndarray:
    """``(n, C)`` log prior shares: each region's weight spread over its sensors by a Gaussian kernel around the
    region's centre of load (AP) and the intended COP (ML)."""
    x_ap, x_ml = layout.ap_array, layout.ml_array
    w_h, w_m, w_f, c_f = region_weights(ap)
    centres = np.column_stack([np.full(ap.size, HEEL_LOAD_CENTRE_FL), np.full(ap.size, MIDFOOT_LOAD_CENTRE_FL), c_f])
    weights = np.column_stack([w_h, w_m, w_f])
    g_ml = np.exp(-0.5 * ((x_ml[None, :] - ml[:, None]) / KERNEL_SIGMA_ML) ** 2)
    prior = np.zeros((ap.size, layout.n_channels))
    for r, name in enumerate(REGIONS):
        mask = layout.region_mask(name)
        if not mask.any():
            continue
        g = np.exp(-0.5 * ((x_ap[None, mask] - centres[:, r : r + 1]) / KERNEL_SIGMA_AP) ** 2) * g_ml[:, mask]
        prior[:, mask] = weights[:, r : r + 1] * g / np.maximum(g.sum(axis=1, keepdims=True), 1e-300)
    return np.log(np.maximum(prior, 1e-12))


def sensor_shares(layout: SensorLayout, ap: np.ndarray, ml: np.ndarray) -> np.ndarray:
    """``(n, n_channels)`` non-negative shares summing to 1 with COP exactly at (ap, ml).

    λ minimises the convex ``log Σ k_i exp(λ·x_i) - λ·target`` (its gradient is
    COP - target); Newton steps with backtracking, vectorised over samples.
    """
    ap, ml = clip_to_hull(layout, np.asarray(ap, float), np.asarray(ml, float))
    x = np.column_stack([layout.ap_array, layout.ml_array])  # (C, 2)
    target = np.column_stack([ap, ml])
    logk = _log_prior(layout, ap, ml)
    lam0 = np.zeros((len(ap), 2))
    if len(ap) > 4 * WARM_START_STEP:
        # consecutive samples have nearly the same λ: solve every k-th, interpolate as the start
        sub = np.arange(0, len(ap), WARM_START_STEP)
        _, lam_sub = _newton(logk[sub], x, target[sub], lam0[sub])
        idx = np.arange(len(ap))
        lam0 = np.column_stack([np.interp(idx, sub, lam_sub[:, 0]), np.interp(idx, sub, lam_sub[:, 1])])
    shares, _ = _newton(logk, x, target, lam0)
    return shares


def _newton(logk: np.ndarray, x: np.ndarray, target: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam = lam.copy()

    def objective(rows: np.ndarray, lam_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = logk[rows] + lam_rows @ x.T
        zmax = z.max(axis=1, keepdims=True)
        w = np.exp(z - zmax)
        s = w.sum(axis=1, keepdims=True)
        f = (np.log(s) + zmax)[:, 0] - np.einsum("ij,ij->i", lam_rows, target[rows])
        return f, w / s

    shares = np.empty_like(logk)
    active = np.arange(len(target))
    restarted = np.zeros(len(target), dtype=bool)
    f_act, w = objective(active, lam)
    for _ in range(NEWTON_MAX_ITER):
        if not len(active):
            break
        shares[active] = w
        mu = w @ x
        grad = mu - target[active]
        c_aa = w @ (x[:, 0] ** 2) - mu[:, 0] ** 2 + 1e-12
        c_mm = w @ (x[:, 1] ** 2) - mu[:, 1] ** 2 + 1e-12
        c_am = w @ (x[:, 0] * x[:, 1]) - mu[:, 0] * mu[:, 1]
        det = c_aa * c_mm - c_am * c_am
        step = -np.column_stack([c_mm * grad[:, 0] - c_am * grad[:, 1], -c_am * grad[:, 0] + c_aa * grad[:, 1]])
        step /= det[:, None]
        # close enough: reweight by 1 + (x - mu)·step, which keeps the shares summing to 1 and moves
        # their mean by Cov·step = -grad, i.e. exactly onto the target
        factor = 1.0 + (x[None, :, 0] - mu[:, :1]) * step[:, :1] + (x[None, :, 1] - mu[:, 1:]) * step[:, 1:]
        final = np.abs(factor - 1.0).max(axis=1) < LINEAR_FINISH_MAX_CHANGE
        shares[active[final]] = w[final] * factor[final]
        keep = ~final
        active, f_act, w, grad, step = active[keep], f_act[keep], w[keep], grad[keep], step[keep]
        if not len(active):
            break
        slope = np.einsum("ij,ij->i", grad, step)
        alpha = np.ones(len(active))
        new_f, new_w = objective(active, lam[active] + step)
        stuck = np.zeros(len(active), dtype=bool)
        for _ in range(30):  # backtracking (Armijo)
            bad = ~(new_f <= f_act + 0.25 * alpha * slope) & ~stuck
            if not bad.any():
                break
            alpha[bad] *= 0.5
            stuck |= alpha < 1e-8
            rows = np.flatnonzero(bad & ~stuck)
            nf, nw = objective(active[rows], lam[active[rows]] + alpha[rows, None] * step[rows])
            new_f[rows], new_w[rows] = nf, nw
        lam[active] += np.where(stuck, 0.0, alpha)[:, None] * step
        f_act, w = new_f, new_w
        if stuck.any():  # no descent from here (e.g. a poor warm start): restart those rows from λ = 0 once
            retry = stuck & ~restarted[active]
            rows = active[retry]
            lam[rows] = 0.0
            restarted[rows] = True
            if len(rows):
                f_act[retry], w[retry] = objective(rows, lam[rows])
            give_up = stuck & ~retry
            active, f_act, w = active[~give_up], f_act[~give_up], w[~give_up]
    if len(active):
        shares[active] = w
    return shares, lam


def offload_heel(layout: SensorLayout, shares: np.ndarray, fraction: float, rows: np.ndarray) -> np.ndarray:
    """Cut the heel channels' share by ``fraction`` in ``rows`` and give it to the other channels pro rata."""
    if fraction <= 0 or not len(rows):
        return shares
    heel = layout.region_mask("heel")
    sub = shares[rows]
    removed = fraction * sub[:, heel].sum(axis=1)
    rest = sub[:, ~heel].sum(axis=1)
    sub[:, heel] *= 1.0 - fraction
    sub[:, ~heel] *= (1.0 + removed / np.maximum(rest, 1e-300))[:, None]
    shares[rows] = sub
    return shares
