"""Per-foot stride table from contacts: timing, centre-of-pressure gait line, load fractions, ZUPT stride length.

All per-sample work is vectorised; per-stride sums use ``np.add.reduceat`` over
stance segments, so there is no Python loop over samples (nor, mostly, strides).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from insole_common.layouts import SensorLayout, centre_of_pressure
from processing.analytics import consts as C

G_M_S2 = 9.80665
#: plausible stride: time, and stance/swing shares
MIN_STRIDE_S, MAX_STRIDE_S = 0.4, 3.5
MIN_SWING_S = 0.1


def foot_load(pressure: np.ndarray, total_force_n: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """The 1-D load used for event detection and whether its zero means "unloaded"."""
    if total_force_n is not None and np.isfinite(total_force_n).any():
        return np.asarray(total_force_n, dtype=np.float64), True
    return pressure.sum(axis=1), False


def stride_rows(
    side: str,
    contacts: dict[str, np.ndarray],
    *,
    fs: float,
    t0_s: float,
    abs0: int,
    pressure: np.ndarray,
    layout: SensorLayout | None,
    load_unit: str,
    cop_ap: np.ndarray | None = None,
    cop_ml: np.ndarray | None = None,
    acc_g: np.ndarray | None = None,
    gyro_dps: np.ndarray | None = None,
    n_strides: int | None = None,
) -> pd.DataFrame:
    """Strides starting at contacts ``0 .. n_strides-1`` (each ends at the next contact's heel strike).

    ``pressure`` etc. are buffer arrays whose first row is absolute sample ``abs0``.
    """
    hs_i, to_i, ok = contacts["hs_i"], contacts["to_i"], contacts["ok"]
    n_c = hs_i.size
    n_s = max(n_c - 1, 0) if n_strides is None else n_strides
    if n_s <= 0:
        return empty_strides()
    hs, to, nhs = hs_i[:n_s], to_i[:n_s], hs_i[1 : n_s + 1]
    stride_t = (nhs - hs) / fs
    stance_t = (to - hs) / fs
    swing_t = (nhs - to) / fs
    keep = ok[:n_s] & np.isfinite(to) & (stride_t >= MIN_STRIDE_S) & (stride_t <= MAX_STRIDE_S) & (stance_t > 0) & (swing_t >= MIN_SWING_S)
    hs, to, nhs = hs[keep], to[keep], nhs[keep]
    stride_t, stance_t, swing_t = stride_t[keep], stance_t[keep], swing_t[keep]
    n = hs.size
    df = pd.DataFrame({
        C.SIDE: np.full(n, side, dtype=object),
        C.HEEL_STRIKE_S: t0_s + hs / fs,
        C.TOE_OFF_S: t0_s + to / fs,
        C.NEXT_HEEL_STRIKE_S: t0_s + nhs / fs,
        C.STRIDE_TIME_S: stride_t,
        C.STANCE_TIME_S: stance_t,
        C.SWING_TIME_S: swing_t,
        C.STANCE_PCT: 100.0 * stance_t / stride_t,
        C.CADENCE_STEPS_PER_MIN: 120.0 / stride_t,
    })
    for col in C.STRIDE_OPTIONAL_COLS:
        df[col] = np.nan
    df[C.STRIDE_LENGTH_SOURCE] = ""
    df[C.LOAD_UNIT] = load_unit
    df[C.BOUT_ID] = -1
    if n == 0:
        return df
    # stance sample segments [a, b) in buffer-relative indices
    a = np.ceil(hs).astype(np.int64) - abs0
    b = np.floor(to).astype(np.int64) + 1 - abs0
    b = np.maximum(b, a + 1)
    _stance_features(df, a, b, pressure, layout, cop_ap, cop_ml)
    if acc_g is not None and gyro_dps is not None:
        sl = zupt_stride_length(hs - abs0, to - abs0, nhs - abs0, acc_g, gyro_dps, fs)
        df[C.STRIDE_LENGTH_M] = sl
        df.loc[np.isfinite(sl), C.STRIDE_LENGTH_SOURCE] = "imu_zupt"
    return df


def empty_strides() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=float) for c in C.STRIDE_COLS})
    df[C.SIDE] = df[C.SIDE].astype(object)
    df[C.STRIDE_LENGTH_SOURCE] = df[C.STRIDE_LENGTH_SOURCE].astype(object)
    df[C.LOAD_UNIT] = df[C.LOAD_UNIT].astype(object)
    df[C.BOUT_ID] = df[C.BOUT_ID].astype(np.int64)
    return df


def _segment_sum(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of ``values[a_k:b_k]`` for every k (NaN treated as 0), via a cumulative sum."""
    cs = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(np.nan_to_num(values), axis=0)])
    return cs[b] - cs[a]


def _stance_features(df, a, b, pressure, layout, cop_ap, cop_ml) -> None:
    n_rows = pressure.shape[0]
    a = np.clip(a, 0, n_rows - 1)
    b = np.clip(b, 1, n_rows)
    if layout is not None:
        p = np.clip(pressure, 0.0, None)
        region = np.column_stack([p[:, layout.region_mask(r)].sum(axis=1) for r in ("heel", "midfoot", "forefoot")])
        lat = p[:, layout.lateral_mask].sum(axis=1)
        med = p[:, layout.medial_mask].sum(axis=1)
        tot = p.sum(axis=1)
        ap, ml = centre_of_pressure(layout, p)
        s_reg = _segment_sum(region, a, b)
        s_tot = _segment_sum(tot, a, b)
        s_lat, s_med = _segment_sum(lat, a, b), _segment_sum(med, a, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            df[C.HEEL_LOAD_FRACTION] = s_reg[:, 0] / s_tot
            df[C.MIDFOOT_LOAD_FRACTION] = s_reg[:, 1] / s_tot
            df[C.FOREFOOT_LOAD_FRACTION] = s_reg[:, 2] / s_tot
            df[C.LATERAL_LOAD_FRACTION] = s_lat / (s_lat + s_med)
            df[C.MEDIAL_LOAD_FRACTION] = s_med / (s_lat + s_med)
            df[C.COP_ML_MEAN_FW] = _segment_sum(np.nan_to_num(ml) * tot, a, b) / s_tot
        weight = tot
    elif cop_ap is not None and cop_ml is not None:
        ap, ml = cop_ap, cop_ml
        weight = np.where(np.isfinite(ml), np.clip(pressure.sum(axis=1), 0, None), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            df[C.COP_ML_MEAN_FW] = _segment_sum(np.nan_to_num(ml) * weight, a, b) / _segment_sum(weight, a, b)
    else:
        return
    _gait_line(df, a, b, ap, ml)
    if layout is not None:
        pk = _segment_max(region[:, 0], a, b)
        df[C.PEAK_HEEL_LOAD] = pk
        df[C.PEAK_LOAD] = _segment_max(weight, a, b)
    else:
        df[C.PEAK_LOAD] = _segment_max(np.clip(pressure.sum(axis=1), 0, None), a, b)


def _segment_max(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max of values[a_k:b_k]; segments may not overlap (stance phases of one foot never do)."""
    v = np.nan_to_num(values, nan=-np.inf)
    out = np.maximum.reduceat(np.r_[v, -np.inf], np.c_[a, b].ravel())[::2]
    return np.where(np.isfinite(out), out, np.nan)


def _gait_line(df, a, b, ap, ml) -> None:
    valid = np.isfinite(ap) & np.isfinite(ml)
    ap0, ml0 = np.where(valid, ap, np.nan), np.where(valid, ml, np.nan)
    # first/last valid COP sample within each stance segment
    idx = np.arange(ap.size)
    first_valid = np.where(valid, idx, ap.size)
    nxt = np.minimum.accumulate(first_valid[::-1])[::-1]
    last_valid = np.where(valid, idx, -1)
    prv = np.maximum.accumulate(last_valid)
    f = nxt[a]
    l_ = prv[b - 1]
    good = (f < b) & (l_ >= a)
    fi, li = np.clip(f, 0, ap.size - 1), np.clip(l_, 0, ap.size - 1)
    df[C.COP_AP_START_FL] = np.where(good, ap0[fi], np.nan)
    df[C.COP_ML_START_FW] = np.where(good, ml0[fi], np.nan)
    df[C.COP_AP_END_FL] = np.where(good, ap0[li], np.nan)
    df[C.COP_ML_END_FW] = np.where(good, ml0[li], np.nan)
    hi_ap = _segment_max(np.where(valid, ap, -np.inf), a, b)
    lo_ap = -_segment_max(np.where(valid, -ap, -np.inf), a, b)
    hi_ml = _segment_max(np.where(valid, ml, -np.inf), a, b)
    lo_ml = -_segment_max(np.where(valid, -ml, -np.inf), a, b)
    df[C.GAIT_LINE_LENGTH_FL] = np.where(good, hi_ap - lo_ap, np.nan)
    df[C.GAIT_LINE_WIDTH_FW] = np.where(good, hi_ml - lo_ml, np.nan)


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated ``arange(s, s + L)`` for every segment, the segment id and position of each element."""
    total = int(lengths.sum())
    seg = np.repeat(np.arange(starts.size), lengths)
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    pos = np.arange(total) - first[seg]
    return starts[seg] + pos, seg, pos


def _segment_argmin(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Index of the minimum of ``values[a_k:b_k]`` for every k (vectorised)."""
    idx, seg, _ = _ragged(a, b - a)
    v = values[idx]
    order = np.lexsort((v, seg))  # by segment, then value
    firsts = np.r_[0, np.cumsum(b - a)[:-1]]
    return idx[order[firsts]]


def zupt_stride_length(hs: np.ndarray, to: np.ndarray, nhs: np.ndarray, acc_g: np.ndarray, gyro_dps: np.ndarray,
                       fs: float) -> np.ndarray:
    """Stride length (m) by zero-velocity-update integration in the sagittal plane.

    The foot is still at mid-stance: the integration of one stride runs from
    the quietest sample (smallest angular rate) of this stance to the quietest
    sample within the first 40 % (of this stance's length) after the next heel
    strike. Pitch comes from the integrated y gyro (axes: x anterior, y left,
    z up), anchored by gravity at the start; acceleration is rotated to the
    walking direction, integrated twice, and the velocity drift is removed
    linearly so that velocity is zero at both still instants. The stride length
    is the forward displacement. Vectorised over all strides at once.
    """
    n = acc_g.shape[0]
    out = np.full(hs.size, np.nan)
    a0 = np.ceil(hs).astype(np.int64)
    b0 = np.floor(to).astype(np.int64) + 1
    a1 = np.ceil(nhs).astype(np.int64)
    b1 = a1 + np.maximum((0.4 * (to - hs)).astype(np.int64), 2) + 1
    ok = (a0 >= 0) & (b1 <= n) & (b0 > a0) & np.isfinite(to)
    if not ok.any():
        return out
    k = np.where(ok)[0]
    wmag = np.sqrt(np.sum(np.nan_to_num(gyro_dps, nan=np.inf) ** 2, axis=1))
    s = _segment_argmin(wmag, a0[k], b0[k])
    e = _segment_argmin(wmag, a1[k], b1[k])
    good = e - s >= 4
    k, s, e = k[good], s[good], e[good]
    if k.size == 0:
        return out
    L = e - s + 1
    idx, seg, pos = _ragged(s, L)
    acc = acc_g[idx]
    gy = gyro_dps[idx, 1]
    finite = np.isfinite(acc).all(axis=1) & np.isfinite(gy)
    seg_ok = np.bincount(seg, weights=~finite, minlength=k.size) == 0
    dt = 1.0 / fs
    theta0 = np.arctan2(-acc_g[s, 0], acc_g[s, 2])
    # trapezoid cumulative integral within each segment (first element 0)
    def seg_cumtrapz(y: np.ndarray) -> np.ndarray:
        inc = np.r_[0.0, (y[1:] + y[:-1]) * 0.5 * dt]
        inc[pos == 0] = 0.0
        c = np.cumsum(inc)
        return c - c[np.r_[0, np.cumsum(L)[:-1]]][seg]
    y = np.nan_to_num(gy)
    theta = theta0[seg] + seg_cumtrapz(y) * np.pi / 180.0
    a_fwd = (np.nan_to_num(acc[:, 0]) * np.cos(theta) + np.nan_to_num(acc[:, 2]) * np.sin(theta)) * G_M_S2
    vel = seg_cumtrapz(a_fwd)
    last = np.cumsum(L) - 1
    vel = vel - vel[last][seg] * pos / (L[seg] - 1)
    disp = seg_cumtrapz(vel)[last]
    out[k] = np.where(seg_ok, np.abs(disp), np.nan)
    return out
