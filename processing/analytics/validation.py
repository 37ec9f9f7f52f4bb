"""Agreement of a strides table with reference events (used by the validation tests; no I/O).

Matching rule for gaitndd (docs/validation.md): a reference stride is *matched*
when one detected stride of the same side has its end heel strike within
``tol_s`` of the reference end heel strike and its duration within ``tol_s`` of
the reference duration. Reference end times: left = ``.ts`` column 1; right
strides are not timed in the ``.ts`` file, so the right stride of row k is the
detected right stride ending in (t_k - T_R,k, t_k] (the right heel strike that
precedes the left one, as the .ts rows are built), again checked on duration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from processing.analytics import consts as C


def match_gaitndd(strides: pd.DataFrame, ts: pd.DataFrame, *, tol_s: float = 0.1) -> pd.DataFrame:
    """One row per reference stride and side: matched flag and detected - reference errors (s)."""
    rows = []
    for side, cs, csw, cst in (("L", "stride_l_s", "swing_l_s", "stance_l_s"), ("R", "stride_r_s", "swing_r_s", "stance_r_s")):
        d = strides[strides[C.SIDE] == side]
        ends = d[C.NEXT_HEEL_STRIKE_S].to_numpy()
        dur = d[C.STRIDE_TIME_S].to_numpy()
        for t, T, sw, st in zip(ts["time_s"], ts[cs], ts[csw], ts[cst]):
            if side == "L":
                j = int(np.argmin(np.abs(ends - t))) if ends.size else -1
                ok = j >= 0 and abs(ends[j] - t) <= tol_s
            else:
                cand = np.where((ends > t - T) & (ends <= t + 0.02))[0]
                j = int(cand[np.argmin(np.abs(dur[cand] - T))]) if cand.size else -1
                ok = j >= 0
            ok = ok and abs(dur[j] - T) <= tol_s
            rows.append({"side": side, "ref_end_s": t, "matched": ok,
                         "stride_err_s": dur[j] - T if ok else np.nan,
                         "stance_err_s": d[C.STANCE_TIME_S].iloc[j] - st if ok else np.nan,
                         "swing_err_s": d[C.SWING_TIME_S].iloc[j] - sw if ok else np.nan})
    return pd.DataFrame(rows)


def event_errors(detected_s: np.ndarray, reference_s: np.ndarray, *, tol_s: float = 0.2) -> np.ndarray:
    """detected - reference for each reference event with a detection within ``tol_s`` (NaN otherwise)."""
    detected_s = np.sort(np.asarray(detected_s, float))
    out = np.full(len(reference_s), np.nan)
    if detected_s.size == 0:
        return out
    for i, r in enumerate(reference_s):
        j = int(np.argmin(np.abs(detected_s - r)))
        if abs(detected_s[j] - r) <= tol_s:
            out[i] = detected_s[j] - r
    return out
