"""Vertical force and intended centre-of-pressure path of one foot, per sample.

Force is in body weights (BW). A full stance follows a double-hump template (steep
loading to the first peak, mid-stance minimum, push-off peak, unloading) that is
exactly zero at heel strike and toe-off and positive in between. Standing and
sitting use slow random sway around a load level per foot; the edges of a gait
sequence blend between the two.
"""

from __future__ import annotations

import numpy as np

from simulator.gait import FootPlan

#: stance-phase knots of the force template; values = P1 * C_P1 + V * C_V + P2 * C_P2
U_KNOTS = np.array([0.0, 0.04, 0.10, 0.22, 0.36, 0.50, 0.64, 0.77, 0.88, 0.95, 1.0])
C_P1 = np.array([0.0, 0.40, 0.86, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
C_V = np.array([0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0])
C_P2 = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 0.62, 0.22, 0.0])

#: gait line (foot frame): anterior-posterior and medial-lateral COP against stance phase.
#: AP runs 0.14 -> 0.83 foot lengths (Moticon's -0.36 .. +0.33 shifted by 0.5); ML is slightly
#: lateral through the midfoot and medial at push-off (under the hallux).
AP_U = np.array([0.0, 0.1, 0.3, 0.5, 0.7, 0.85, 1.0])
AP_PATH = np.array([0.14, 0.20, 0.36, 0.50, 0.64, 0.74, 0.83])
#: heel pain (full severity): the COP starts further forward and leaves the rearfoot early (flat-footed contact,
#: shorter rearfoot contact; Phillips & McClinton 2017); blended with AP_PATH by the severity
AP_PAIN_PATH = np.array([0.14, 0.22, 0.40, 0.53, 0.66, 0.75, 0.83])
#: the forefoot phase, where heel pain's lateral shift applies (smoothly from 0 at U_FOREFOOT[0] to 1 at [1])
U_FOREFOOT = (0.30, 0.55)
ML_U = np.array([0.0, 0.2, 0.45, 0.7, 0.85, 1.0])
ML_PATH = np.array([0.0, 0.04, 0.08, 0.02, -0.06, -0.13])
#: shuffling rolls over a shorter stretch of the foot (flat-footed)
SHUFFLE_AP = (0.30, 0.68)

#: static postures: load per foot (BW), left/right weight-shift sway, independent sway, COP and its sway
STATIC_POSTURE = {
    "standing": dict(level=0.5, anti=0.05, ind=0.01, ap=0.42, ap_sway=0.02, ml=0.0, ml_sway=0.02),
    "sitting": dict(level=0.15, anti=0.01, ind=0.03, ap=0.45, ap_sway=0.02, ml=0.0, ml_sway=0.02),
}
STEPPING_POSTURE = STATIC_POSTURE["standing"]  # what gait sequences blend from and to
BLEND_HALF_S = 0.5


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Quintic 0 -> 1 on [0, 1] with zero first and second derivatives at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (10.0 + x * (-15.0 + 6.0 * x))


def force_template(u: np.ndarray, peak1: np.ndarray, valley: np.ndarray, peak2: np.ndarray) -> np.ndarray:
    """Monotone cubic (PCHIP) through the template knots, per sample; 0 outside (0, 1)."""
    u = np.asarray(u, dtype=np.float64)
    y = np.outer(peak1, C_P1) + np.outer(valley, C_V) + np.outer(peak2, C_P2)  # (n, K)
    h = np.diff(U_KNOTS)
    delta = np.diff(y, axis=1) / h
    d = np.zeros_like(y)
    d0, d1 = delta[:, :-1], delta[:, 1:]
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same = (d0 * d1) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / d0 + w2 / d1)
    d[:, 1:-1] = np.where(same, harmonic, 0.0)
    d[:, 0] = delta[:, 0]
    d[:, -1] = delta[:, -1]
    uc = np.clip(u, 0.0, 1.0)
    seg = np.clip(np.searchsorted(U_KNOTS, uc, side="right") - 1, 0, len(U_KNOTS) - 2)
    rows = np.arange(len(u))
    hk = h[seg]
    s = (uc - U_KNOTS[seg]) / hk
    y0, y1 = y[rows, seg], y[rows, seg + 1]
    m0, m1 = d[rows, seg] * hk, d[rows, seg + 1] * hk
    s2, s3 = s * s, s * s * s
    out = (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * y1 + (s3 - s2) * m1
    return np.where((u > 0.0) & (u < 1.0), np.maximum(out, 0.0), 0.0)


def gait_line(u: np.ndarray, shuffling: np.ndarray | bool = False, pain: float = 0.0,
              forefoot_shift_fw: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Intended (ap, ml) COP against stance phase ``u`` (before the whole-stance lateral shift); ``pain`` blends in
    the heel-pain AP path, ``forefoot_shift_fw`` moves the forefoot phase laterally."""
    uc = np.clip(u, 0.0, 1.0)
    ap = np.interp(uc, AP_U, (1.0 - pain) * AP_PATH + pain * AP_PAIN_PATH)
    ml = np.interp(uc, ML_U, ML_PATH)
    if forefoot_shift_fw:
        ml = ml + forefoot_shift_fw * smoothstep((uc - U_FOREFOOT[0]) / (U_FOREFOOT[1] - U_FOREFOOT[0]))
    lo, hi = SHUFFLE_AP
    ap_shuffle = lo + (ap - AP_PATH[0]) * (hi - lo) / (AP_PATH[-1] - AP_PATH[0])
    return np.where(shuffling, ap_shuffle, ap), np.where(shuffling, ml * 0.5, ml)


class SwaySignals:
    """Slow random sway: sums of sinusoids between 0.03 and 0.4 Hz with unit standard deviation."""

    def __init__(self, rng: np.random.Generator, n_signals: int, n_components: int = 6) -> None:
        self.freq_hz = rng.uniform(0.03, 0.4, size=(n_signals, n_components))
        self.phase = rng.uniform(0, 2 * np.pi, size=(n_signals, n_components))
        self.amp = np.sqrt(2.0 / n_components)

    def __call__(self, i: int, t: np.ndarray) -> np.ndarray:
        out = np.zeros_like(t)
        for f, ph in zip(self.freq_hz[i], self.phase[i], strict=True):
            out += np.sin(2 * np.pi * f * t + ph)
        return self.amp * out


def static_model(t: np.ndarray, bouts: list[tuple[float, float, str]], side_sign: float, foot_index: int,
                 sway: SwaySignals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load (BW), ap and ml of the foot when it is not stepping; smooth across bout edges.

    Stepping bouts count as standing here: gait sequences blend in from and out to this model.
    """
    n = len(t)
    fields = ("level", "anti", "ind", "ap", "ap_sway", "ml", "ml_sway")
    acc = {k: np.zeros(n) for k in fields}
    min_len = min(e - s for s, e, _ in bouts)
    h = min(BLEND_HALF_S, 0.5 * min_len)
    dt = t[1] - t[0] if n > 1 else 1.0
    for i, (s, e, act) in enumerate(bouts):
        lo = np.searchsorted(t, s - h - dt) if i > 0 else 0
        hi = np.searchsorted(t, e + h + dt) if i < len(bouts) - 1 else n
        tt = t[lo:hi]
        w = np.ones(len(tt))
        if i > 0:
            w *= smoothstep((tt - s + h) / (2 * h))
        if i < len(bouts) - 1:
            w *= smoothstep((e - tt + h) / (2 * h))
        posture = STATIC_POSTURE.get(act, STEPPING_POSTURE)
        for k in fields:
            acc[k][lo:hi] += w * posture[k]
    load = acc["level"] * (1.0 + side_sign * acc["anti"] / 0.5 * sway(0, t)) + acc["ind"] * sway(1 + foot_index, t)
    ap = acc["ap"] + acc["ap_sway"] * sway(3 + foot_index, t)
    ml = acc["ml"] + acc["ml_sway"] * sway(5 + foot_index, t)
    return np.maximum(load, 0.01), ap, ml


def foot_force(t: np.ndarray, plan: FootPlan, seqs: list[tuple[float, float, list]], static: tuple,
               lateral_shift_fw: float, *, pain: float = 0.0,
               forefoot_shift_fw: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample load (BW), intended COP (ap, ml) and full-stance index (-1 outside full stances); ``pain`` and
    ``forefoot_shift_fw`` as in :func:`gait_line`."""
    f_static, ap_static, ml_static = static
    load = f_static.copy()
    ap = ap_static.copy()
    ml = ml_static.copy()
    for a, b, _ in seqs:  # in gait sequences the foot is unloaded unless a stance says otherwise
        lo, hi = np.searchsorted(t, a), np.searchsorted(t, b)
        load[lo:hi] = 0.0
    arr = plan.arrays()
    stance_idx = np.full(len(t), -1, dtype=np.int64)
    if len(arr["hs"]):
        k = np.searchsorted(arr["hs"], t, side="right") - 1
        kc = np.clip(k, 0, None)
        inside = (k >= 0) & (t < arr["to"][kc])
        idx = np.flatnonzero(inside)
        kk = kc[idx]
        u = (t[idx] - arr["hs"][kk]) / (arr["to"][kk] - arr["hs"][kk])
        load[idx] = force_template(u, arr["peak1"][kk], arr["valley"][kk], arr["peak2"][kk])
        g_ap, g_ml = gait_line(u, arr["activity"][kk] == "shuffling", pain, forefoot_shift_fw)
        ap[idx] = g_ap + arr["ap_jit"][kk]
        ml[idx] = g_ml + arr["ml_jit"][kk] + lateral_shift_fw
        stance_idx[idx] = kk
    for part in plan.partials:
        lo, hi = np.searchsorted(t, part["start"]), np.searchsorted(t, part["end"])
        if hi <= lo:
            continue
        tt = t[lo:hi]
        s_len = part["stance_s"]
        if part["kind"] == "initial":
            u = 1.0 - (part["anchor"] - tt) / s_len
            tb0 = max(part["start"], part["anchor"] - s_len)
            tb1 = tb0 + 0.5 * (part["anchor"] - tb0)
            w = 1.0 - smoothstep((tt - tb0) / max(tb1 - tb0, 1e-9))
        else:
            u = (tt - part["anchor"]) / s_len
            tc1 = min(part["anchor"] + s_len, part["end"])
            tc0 = part["anchor"] + 0.5 * (tc1 - part["anchor"])
            w = smoothstep((tt - tc0) / max(tc1 - tc0, 1e-9))
        ones = np.ones(len(tt))
        tmpl = force_template(np.clip(u, 0.0, 1.0 - 1e-12) * (u > 0), part["peak1"] * ones, part["valley"] * ones,
                              part["peak2"] * ones)
        g_ap, g_ml = gait_line(u, False, pain, forefoot_shift_fw)
        g_ml = g_ml + part["ml_jit"] + lateral_shift_fw
        f_s = f_static[lo:hi]
        total = w * f_s + (1.0 - w) * tmpl
        safe = np.where(total > 0, total, 1.0)
        ap[lo:hi] = (w * f_s * ap_static[lo:hi] + (1.0 - w) * tmpl * g_ap) / safe
        ml[lo:hi] = (w * f_s * ml_static[lo:hi] + (1.0 - w) * tmpl * g_ml) / safe
        load[lo:hi] = total
    return load, ap, ml, stance_idx
