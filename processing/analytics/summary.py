"""The JSON-ready summary of an analysis (``GaitResult.summary``): means per side, cadence, symmetry indices,
data quality and flags."""

from __future__ import annotations

import warnings
from typing import Any, overload

import numpy as np
import pandas as pd

from insole_common import metrics as C


@overload
def symmetry_index(left: float, right: float) -> float: ...
@overload
def symmetry_index(left: pd.Series | np.ndarray | list, right: pd.Series | np.ndarray | list) -> np.ndarray: ...
def symmetry_index(left, right):
    """Robinson symmetry index in percent: 100 * (L - R) / (0.5 * (L + R)); 0 = symmetric, positive = more on the
    left; NaN where a side is missing or not finite or both are 0. Scalars give a float, arrays (or Series) an array,
    element by element. The one formula of every signed symmetry index (:data:`insole_common.metrics.SYMMETRY_OF`):
    the session summary, the compensation detector's ``si_*`` series and the dashboards use it."""
    lv, rv = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
    total = lv + rv
    ok = np.isfinite(lv) & np.isfinite(rv) & (total != 0)
    out = np.full(np.broadcast(lv, rv).shape, np.nan)
    np.divide(100.0 * (lv - rv), 0.5 * total, out=out, where=ok)
    return float(out) if out.ndim == 0 else out


def _f(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return None if not np.isfinite(x) else round(float(x), 6)
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def build_summary(strides, bouts, engines, meta, *, n_candidates, rejected, dead=frozenset()) -> dict[str, Any]:
    """The summary of the strides kept in bouts, the bouts and the per-foot engines' data quality."""
    s: dict[str, Any] = {"source_format": meta.get("source_format"), "strides_n": int(len(strides)),
                         "stride_candidates_n": int(n_candidates), "strides_rejected_outside_bouts_n": rejected}
    per_side = {}
    cols = [C.STRIDE_TIME_S, C.STANCE_TIME_S, C.SWING_TIME_S, C.STANCE_PCT, C.DOUBLE_SUPPORT_S,
            C.CADENCE_STEPS_PER_MIN, C.STRIDE_LENGTH_M, C.GAIT_SPEED_M_S, C.COP_ML_MEAN_FW,
            C.LATERAL_LOAD_FRACTION, C.HEEL_LOAD_FRACTION, C.MIDFOOT_LOAD_FRACTION, C.FOREFOOT_LOAD_FRACTION,
            C.PEAK_HEEL_LOAD, C.LATERAL_FOREFOOT_LOAD_FRACTION, C.REARFOOT_CONTACT_S, C.REARFOOT_CONTACT_PCT,
            C.STANCE_IMPULSE]
    side_arr = strides[C.SIDE].to_numpy(dtype=object)
    vals = strides[cols].to_numpy(dtype=np.float64)
    for side in ("L", "R"):
        v = vals[side_arr == side]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: mean is NaN, reported as None
            means = np.nanmean(v, axis=0) if len(v) else None
        per_side[side] = {"strides_n": int(len(v)),
                          **{f"mean_{c}": _f(means[i]) if means is not None else None for i, c in enumerate(cols)}}
    s["per_side"] = per_side
    if len(strides):
        s["mean_stride_time_s"] = _f(strides[C.STRIDE_TIME_S].mean())
        s["cadence_steps_per_min"] = _f(120.0 / strides[C.STRIDE_TIME_S].median())
        s["mean_stride_length_m"] = _f(strides[C.STRIDE_LENGTH_M].astype(float).mean())
        s["mean_gait_speed_m_s"] = _f(strides[C.GAIT_SPEED_M_S].astype(float).mean())
        s["stride_time_cv_pct"] = (_f(100 * strides[C.STRIDE_TIME_S].std() / strides[C.STRIDE_TIME_S].mean())
                                   if len(strides) > 2 else None)
    s["symmetry_index_pct"] = {c: _f(symmetry_index(per_side["L"][f"mean_{c}"] or np.nan,
                                                    per_side["R"][f"mean_{c}"] or np.nan))
                               for c in (C.STRIDE_TIME_S, C.STANCE_TIME_S, C.SWING_TIME_S, C.STRIDE_LENGTH_M,
                                         C.PEAK_HEEL_LOAD, *C.SYMMETRY_OF.values())}
    walking = bouts.activity == "walking"
    s["walking_time_s"] = (_f(float((bouts.loc[walking, "end_s"] - bouts.loc[walking, "start_s"]).sum()))
                           if len(bouts) else 0.0)
    s["bouts_n"] = int((bouts.activity == "walking").sum()) if len(bouts) else 0
    flags = []
    q = {}
    for side, e in engines.items():
        n = max(e.stats["samples_n"], 1)
        q[side] = {"samples_n": e.stats["samples_n"], "missing_fraction": round(e.stats["missing_n"] / n, 6),
                   "saturated_fraction": round(e.stats["saturated_n"] / n, 6)}
        if e.stats["missing_n"] / n > 0.01:
            flags.append(f"dropped_samples_{side}")
        if e.stats["saturated_n"] / n > 0.01:
            flags.append(f"saturated_channel_{side}")
    for side, e in engines.items():
        if e.stats["missing_n"] >= e.stats["samples_n"]:
            flags.append(f"no_data_{side}")
        elif side in dead or e.flat_intervals_s():
            flags.append(f"flat_sensor_{side}")
    if len(engines) < 2:
        flags.append("single_foot")
    if len(strides) == 0:
        flags.append("no_walking" if n_candidates == 0 else "no_walking_bout")
    elif len(strides) < 4:
        flags.append("few_strides")
    if not np.isfinite(strides[C.STRIDE_LENGTH_M].astype(float)).any():
        flags.append("no_stride_length")
    reader = meta.get("reader") or {}
    if reader.get("truncated"):
        flags.append("truncated_file")
    s["data_quality"] = q
    s["reader_quality"] = reader
    s["flags"] = flags
    return s
