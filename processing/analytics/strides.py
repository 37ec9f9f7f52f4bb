"""Per-foot stride table from contacts: timing, centre-of-pressure gait line, load (impulse) fractions by foot
region, rearfoot contact, ZUPT stride length.

Regions come from the one geometric rule of :mod:`insole_common.layouts` (rearfoot ``ap < 0.27``, midfoot
``< 0.55``, forefoot; lateral ``ml > 0``). A region's load fraction is its force-time integral over the stance
divided by the whole foot's (both integrals by the rectangle rule over the same samples, so the sample interval
cancels): ``heel_load_fraction`` is the heel (rearfoot) impulse fraction.

All per-sample work is vectorised; per-stride sums use ``np.add.reduceat`` over
stance segments, so there is no Python loop over samples (nor, mostly, strides).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from insole_common import metrics as C
from insole_common.layouts import REARFOOT_END_FL, SensorLayout

G_M_S2 = 9.80665
#: plausible stride: time, and shortest swing (the same 60 ms as the event detector's ``min_swing_ms``: the brief
#: lifts of turn-around shuffles are swings; docs/validation.md)
MIN_STRIDE_S, MAX_STRIDE_S = 0.4, 3.5
MIN_SWING_S = 0.06


def foot_load(pressure: np.ndarray, total_force_n: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """The 1-D load used for event detection and whether its zero means "unloaded"."""
    if total_force_n is not None and np.isfinite(total_force_n).any():
        return np.asarray(total_force_n, dtype=np.float64), True
    return pressure.sum(axis=1), False


#: rows of :func:`channel_sums`' weighted sums
(Q_HEEL, Q_MIDFOOT, Q_FOREFOOT, Q_LATERAL, Q_MEDIAL, Q_TOTAL, Q_ML_LOADED, Q_AP_MOMENT, Q_ML_MOMENT,
 Q_LATERAL_FOREFOOT) = range(10)
#: the rows summed over each stance (Q_ML_LOADED is filled in place first)
_Q_SUMMED = [Q_HEEL, Q_MIDFOOT, Q_FOREFOOT, Q_LATERAL, Q_MEDIAL, Q_TOTAL, Q_ML_LOADED, Q_LATERAL_FOREFOOT]


def channel_sums(pressure: np.ndarray, layout: SensorLayout | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-sample sum of the channels (NaN if any channel is) and, with a layout, the ``(n, 10)`` weighted
    channel sums of the clipped (>= 0) pressures that the stance features need (rows ``Q_*``): one matrix
    product reads the 16 channels once. The array is column-major, so each quantity is contiguous."""
    ones = np.ones(pressure.shape[1])
    if layout is None:
        return pressure @ ones, None
    clip = not (pressure.min() >= 0)  # (NaN min: clip, and sum the raw channels separately)
    p = np.maximum(pressure, 0.0) if clip else pressure
    regions = [layout.region_mask(r) for r in ("heel", "midfoot", "forefoot")]
    M = np.column_stack([*regions, layout.lateral_mask, layout.medial_mask, np.ones(layout.n_channels, bool),
                                   np.zeros(layout.n_channels), layout.ap_array, layout.ml_array,
                                   layout.lateral_forefoot_mask]).astype(np.float64)
    q = (M.T @ p.T).T
    return (pressure @ ones if clip else q[:, Q_TOTAL].copy()), q


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
    channel_q: np.ndarray | None = None,
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
    keep = (ok[:n_s] & np.isfinite(to) & (stride_t >= MIN_STRIDE_S) & (stride_t <= MAX_STRIDE_S) & (stance_t > 0)
            & (swing_t >= MIN_SWING_S))
    hs, to, nhs = hs[keep], to[keep], nhs[keep]
    stride_t, stance_t, swing_t = stride_t[keep], stance_t[keep], swing_t[keep]
    n = hs.size
    cols: dict[str, np.ndarray] = {
        C.SIDE: np.full(n, side, dtype=object),
        C.HEEL_STRIKE_S: t0_s + hs / fs,
        C.TOE_OFF_S: t0_s + to / fs,
        C.NEXT_HEEL_STRIKE_S: t0_s + nhs / fs,
        C.STRIDE_TIME_S: stride_t,
        C.STANCE_TIME_S: stance_t,
        C.SWING_TIME_S: swing_t,
        C.STANCE_PCT: 100.0 * stance_t / stride_t,
        C.CADENCE_STEPS_PER_MIN: 120.0 / stride_t,
    }
    for col in C.STRIDE_OPTIONAL_COLS:
        cols[col] = np.full(n, np.nan)
    cols[C.STRIDE_LENGTH_SOURCE] = np.full(n, "", dtype=object)
    cols[C.LOAD_UNIT] = np.full(n, load_unit, dtype=object)
    cols[C.BOUT_ID] = np.full(n, -1, dtype=np.int64)
    if n:
        # stance sample segments [a, b) in buffer-relative indices
        a = np.ceil(hs).astype(np.int64) - abs0
        b = np.floor(to).astype(np.int64) + 1 - abs0
        b = np.maximum(b, a + 1)
        _stance_features(cols, a, b, pressure, layout, cop_ap, cop_ml, channel_q)
        _rearfoot_contact(cols, a, b, hs - abs0, fs)
        cols[C.STANCE_IMPULSE] = cols.pop(_IMPULSE_SUM) / fs
        if acc_g is not None and gyro_dps is not None:
            sl = zupt_stride_length(hs - abs0, to - abs0, nhs - abs0, acc_g, gyro_dps, fs)
            cols[C.STRIDE_LENGTH_M] = sl
            cols[C.STRIDE_LENGTH_SOURCE] = np.where(np.isfinite(sl), "imu_zupt", "").astype(object)
    return pd.DataFrame(cols, columns=C.STRIDE_CORE_COLS + C.STRIDE_OPTIONAL_COLS
                        + [C.STRIDE_LENGTH_SOURCE, C.LOAD_UNIT, C.BOUT_ID])


def empty_strides() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=float) for c in C.STRIDE_COLS})
    df[C.SIDE] = df[C.SIDE].astype(object)
    df[C.STRIDE_LENGTH_SOURCE] = df[C.STRIDE_LENGTH_SOURCE].astype(object)
    df[C.LOAD_UNIT] = df[C.LOAD_UNIT].astype(object)
    df[C.BOUT_ID] = df[C.BOUT_ID].astype(np.int64)
    return df


def _segment_reduce(op: np.ufunc, values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``op`` over ``values[..., a_k:b_k]`` for every k, along the last axis (needs a_k < b_k <= n): one
    ``reduceat`` over the interleaved bounds, reading only the segments."""
    n = values.shape[-1]
    idx = np.c_[a, np.minimum(b, n - 1)].ravel()
    out = op.reduceat(values, idx, axis=-1)[..., ::2]
    end = (b >= n) & (a < n - 1)  # a segment running to the end: reduceat stopped one short
    if end.any():
        out[..., end] = op(out[..., end], values[..., n - 1 : n])
    return out


def _segment_sum(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of 1-D ``values[a_k:b_k]`` for every k (NaN treated as 0)."""
    return _segment_reduce(np.add, np.nan_to_num(values), a, b)


#: scratch keys of the stance features: the per-stance sum of the load and the per-sample COP ap
_IMPULSE_SUM, _COP_AP = "_impulse_sum", "_cop_ap"


def _rearfoot_contact(df: dict, a: np.ndarray, b: np.ndarray, hs: np.ndarray, fs: float) -> None:
    """Rearfoot contact: from heel strike until the COP leaves the rearfoot for the last time in the stance (the
    end of the last stance sample whose COP has ``ap < REARFOOT_END_FL``); 0 when the COP is never on the
    rearfoot (forefoot contact), NaN without a COP. In s and in % of the stance."""
    ap = df.pop(_COP_AP)
    if ap is None:
        return
    n = ap.size
    a, b = np.clip(a, 0, n - 1), np.clip(b, 1, n)
    idx = np.arange(n)
    with np.errstate(invalid="ignore"):
        rear = ap < REARFOOT_END_FL
    last = _segment_reduce(np.maximum, np.where(rear, idx, -1), a, b)
    any_cop = _segment_reduce(np.maximum, np.where(np.isfinite(ap), idx, -1), a, b) >= a
    dur = np.where(last >= a, np.clip((last + 1 - hs) / fs, 0.0, None), 0.0)
    dur = np.minimum(dur, df[C.STANCE_TIME_S])
    df[C.REARFOOT_CONTACT_S] = np.where(any_cop, dur, np.nan)
    df[C.REARFOOT_CONTACT_PCT] = 100.0 * df[C.REARFOOT_CONTACT_S] / df[C.STANCE_TIME_S]


def _stance_features(df: dict, a, b, pressure, layout, cop_ap, cop_ml, channel_q=None) -> None:
    """Fill the stance columns of ``df`` (a dict of per-stride arrays), and its scratch keys ``_IMPULSE_SUM``
    (the per-stance sum of the load) and ``_COP_AP`` (the per-sample COP, or None)."""
    n_rows = pressure.shape[0]
    a = np.clip(a, 0, n_rows - 1)
    b = np.clip(b, 1, n_rows)
    if layout is not None:
        # every per-sample quantity is a weighted channel sum (see channel_sums), one quantity per row so that
        # the per-stance reductions run along contiguous memory
        # (rows 6 and missing samples are rewritten in place: idempotent, so the engine's buffer may be passed)
        q = channel_q if channel_q is not None else channel_sums(pressure, layout)[1]
        assert q is not None  # (channel_sums returns the rows whenever there is a layout)
        Q = np.ascontiguousarray(q.T)
        tot = Q[5]
        missing = np.isnan(tot)
        if missing.any():
            Q[:, missing] = 0.0  # missing rows weigh nothing (and have no COP)
        loaded = tot > 1e-9
        ap, ml = np.full(tot.size, np.nan), np.full(tot.size, np.nan)
        np.divide(Q[7], tot, out=ap, where=loaded)
        np.divide(Q[8], tot, out=ml, where=loaded)
        np.multiply(Q[8], loaded, out=Q[6])  # ml * total where the COP exists
        S = _segment_reduce(np.add, Q[_Q_SUMMED], a, b)
        s_tot = S[5]
        with np.errstate(invalid="ignore", divide="ignore"):
            df[C.HEEL_LOAD_FRACTION] = S[0] / s_tot
            df[C.MIDFOOT_LOAD_FRACTION] = S[1] / s_tot
            df[C.FOREFOOT_LOAD_FRACTION] = S[2] / s_tot
            df[C.LATERAL_LOAD_FRACTION] = S[3] / (S[3] + S[4])
            df[C.MEDIAL_LOAD_FRACTION] = S[4] / (S[3] + S[4])
            df[C.COP_ML_MEAN_FW] = S[6] / s_tot
            df[C.LATERAL_FOREFOOT_LOAD_FRACTION] = S[7] / s_tot
        df[_IMPULSE_SUM], df[_COP_AP] = s_tot, ap
        _gait_line(df, a, b, ap, ml)
        pk = _segment_reduce(np.fmax, Q[[0, 5]], a, b)
        df[C.PEAK_HEEL_LOAD] = pk[0]
        df[C.PEAK_LOAD] = pk[1]
    elif cop_ap is not None and cop_ml is not None:
        load = np.clip(pressure.sum(axis=1), 0, None)
        weight = np.where(np.isfinite(cop_ml), load, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            df[C.COP_ML_MEAN_FW] = _segment_sum(np.nan_to_num(cop_ml) * weight, a, b) / _segment_sum(weight, a, b)
        _gait_line(df, a, b, cop_ap, cop_ml)
        df[C.PEAK_LOAD] = _segment_max(weight, a, b)
        df[_IMPULSE_SUM], df[_COP_AP] = _segment_sum(load, a, b), cop_ap
    else:
        load = np.clip(pressure.sum(axis=1), 0, None)
        df[C.PEAK_LOAD] = _segment_max(load, a, b)
        df[_IMPULSE_SUM], df[_COP_AP] = _segment_sum(load, a, b), None


def _segment_max(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max of 1-D ``values[a_k:b_k]`` ignoring NaN (NaN when the segment has no finite value)."""
    return _segment_reduce(np.fmax, values, a, b)


def _gait_line(df, a, b, ap, ml) -> None:
    valid = np.isfinite(ap) & np.isfinite(ml)
    ap0, ml0 = np.where(valid, ap, np.nan), np.where(valid, ml, np.nan)
    n = ap.size
    # first / last valid COP sample within each stance segment
    idx = np.arange(n)
    f = _segment_reduce(np.minimum, np.where(valid, idx, n), a, b)
    l_ = _segment_reduce(np.maximum, np.where(valid, idx, -1), a, b)
    good = (f < b) & (l_ >= a)
    fi, li = np.clip(f, 0, n - 1), np.clip(l_, 0, n - 1)
    df[C.COP_AP_START_FL] = np.where(good, ap0[fi], np.nan)
    df[C.COP_ML_START_FW] = np.where(good, ml0[fi], np.nan)
    df[C.COP_AP_END_FL] = np.where(good, ap0[li], np.nan)
    df[C.COP_ML_END_FW] = np.where(good, ml0[li], np.nan)
    both = np.vstack([ap0, ml0])
    hi = _segment_reduce(np.fmax, both, a, b)
    lo = _segment_reduce(np.fmin, both, a, b)
    df[C.GAIT_LINE_LENGTH_FL] = np.where(good, hi[0] - lo[0], np.nan)
    df[C.GAIT_LINE_WIDTH_FW] = np.where(good, hi[1] - lo[1], np.nan)


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated ``arange(s, s + L)`` for every segment, the segment id and position of each element."""
    total = int(lengths.sum())
    seg = np.repeat(np.arange(starts.size), lengths)
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    pos = np.arange(total) - first[seg]
    return starts[seg] + pos, seg, pos


def _segment_argmin(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Index of the (first) minimum of ``values[a_k:b_k]`` for every k (vectorised, O(total length))."""
    idx, seg, _ = _ragged(a, b - a)
    v = values[idx]
    firsts = np.r_[0, np.cumsum(b - a)[:-1]]
    mins = np.minimum.reduceat(v, firsts)
    hit = np.flatnonzero(v == mins[seg])
    _, first_hit = np.unique(seg[hit], return_index=True)
    out = idx[firsts].copy()  # segments whose minimum is NaN: their first sample
    out[seg[hit[first_hit]]] = idx[hit[first_hit]]
    return out


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
    wmag = gyro_dps[:, 0] ** 2 + gyro_dps[:, 1] ** 2 + gyro_dps[:, 2] ** 2  # squared angular rate: same argmin
    wmag[np.isnan(wmag)] = np.inf
    s = _segment_argmin(wmag, a0[k], b0[k])
    e = _segment_argmin(wmag, a1[k], b1[k])
    good = e - s >= 4
    k, s, e = k[good], s[good], e[good]
    if k.size == 0:
        return out
    L = e - s + 1
    idx, seg, _ = _ragged(s, L)
    firsts = np.r_[0, np.cumsum(L)[:-1]]
    last = firsts + L - 1
    ax, az = acc_g[idx, 0], acc_g[idx, 2]  # sagittal plane: x anterior, z up
    gy = gyro_dps[idx, 1]
    finite = np.isfinite(ax) & np.isfinite(az) & np.isfinite(gy)
    seg_ok = np.ones(k.size, bool)
    if not finite.all():
        seg_ok = np.bincount(seg, weights=~finite, minlength=k.size) == 0
        ax, az, gy = np.nan_to_num(ax), np.nan_to_num(az), np.nan_to_num(gy)
    dt = 1.0 / fs
    theta0 = np.arctan2(-acc_g[s, 0], acc_g[s, 2])

    def run_trapz(y: np.ndarray) -> np.ndarray:
        """Running trapezoid integral over the concatenated segments; segment-relative values are
        ``c - c[firsts][seg]`` (the increment into each segment's first sample is zeroed)."""
        inc = np.empty_like(y)
        inc[0] = 0.0
        np.add(y[1:], y[:-1], out=inc[1:])
        inc *= 0.5 * dt
        inc[firsts] = 0.0
        return np.cumsum(inc)

    cg = run_trapz(gy)
    theta = (theta0 - cg[firsts] * np.pi / 180.0)[seg] + cg * (np.pi / 180.0)
    a_fwd = (ax * np.cos(theta) + az * np.sin(theta)) * G_M_S2
    c = run_trapz(a_fwd)  # velocity (before drift removal) = c - c[first] within a segment
    c0, c1 = c[firsts], c[last]
    # forward displacement = trapezoid integral of the drift-corrected velocity v_i = (c_i - c0) - (c1 - c0) * pos / (L-1);
    # v is 0 at both ends, so the trapezoid sum is dt * sum(v) = dt * (sum(c) - L * c0 - (c1 - c0) * L / 2)
    disp = dt * (np.add.reduceat(c, firsts) - L * c0 - (c1 - c0) * L / 2.0)
    out[k] = np.where(seg_ok, np.abs(disp), np.nan)
    return out
