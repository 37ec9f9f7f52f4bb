"""Agreement of a strides table with reference events (used by the validation tests; no I/O).

Matching rule for gaitndd (docs/validation.md): a reference stride is *matched*
when one detected stride of the same side has its end heel strike within
``tol_s`` of the reference end heel strike and its duration within ``tol_s`` of
the reference duration. Reference end times: left = ``.ts`` column 1; right
strides are not timed in the ``.ts`` file, so the right stride of row k is the
detected right stride ending in (t_k - T_R,k, t_k] (the right heel strike that
precedes the left one, as the .ts rows are built), again checked on duration.

Stale reference rows: when a foot's sensor dies, the authors' software repeats
that foot's last stride, swing and stance values unchanged on every later row
(als5.rit is flat at the ADC floor from 168 s; its right columns repeat
1.2533 / 0.4233 / 0.8300 s on every row after it: 90 stale rows). A row whose three values
for a side equal those of the previous row *and* of the row before that is
not a measurement: it gets ``reference_valid = False`` and is left out of the
match share and the errors. Single chance repeats (two equal rows, which
happen at a 1/300 s resolution) stay in.

Pauses: a reference "stride" longer than ``MAX_STRIDE_S`` (3.5 s, the
analyser's plausibility limit) spans a stop (als4 has reference strides of
9.1, 10.5, 25.0, 25.2, 27.6 and 30.2 s where the subject stood); it is not a
gait cycle, gets ``reference_valid = False`` too, and is counted separately.
Both shares (all rows, valid rows) are reported in docs/validation.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from insole_common import metrics as C
from processing.analytics.strides import MAX_STRIDE_S


def match_gaitndd(strides: pd.DataFrame, ts: pd.DataFrame, *, tol_s: float = 0.1) -> pd.DataFrame:
    """One row per reference stride and side: ``reference_valid``, ``matched`` and detected - reference errors (s)."""
    rows = []
    for side, cs, csw, cst in (("L", "stride_l_s", "swing_l_s", "stance_l_s"), ("R", "stride_r_s", "swing_r_s", "stance_r_s")):
        d = strides[strides[C.SIDE] == side]
        ends = d[C.NEXT_HEEL_STRIKE_S].to_numpy()
        dur = d[C.STRIDE_TIME_S].to_numpy()
        v = ts[[cs, csw, cst]].to_numpy(float)
        same = np.r_[False, (v[1:] == v[:-1]).all(axis=1)]
        stale = same & np.r_[False, same[:-1]]
        for t, T, sw, st, bad in zip(ts["time_s"], ts[cs], ts[csw], ts[cst], stale | (v[:, 0] > MAX_STRIDE_S), strict=True):
            if bad:
                rows.append({"side": side, "ref_end_s": t, "reference_valid": False, "matched": False,
                             "stride_err_s": np.nan, "stance_err_s": np.nan, "swing_err_s": np.nan})
                continue
            if side == "L":
                j = int(np.argmin(np.abs(ends - t))) if ends.size else -1
                ok = j >= 0 and abs(ends[j] - t) <= tol_s
            else:
                cand = np.where((ends > t - T) & (ends <= t + 0.02))[0]
                j = int(cand[np.argmin(np.abs(dur[cand] - T))]) if cand.size else -1
                ok = j >= 0
            ok = ok and abs(dur[j] - T) <= tol_s
            rows.append({"side": side, "ref_end_s": t, "reference_valid": True, "matched": ok,
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
