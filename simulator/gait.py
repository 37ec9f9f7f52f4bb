"""Gait plan: heel strikes, toe-offs, stride lengths and foot swings of every stepping bout.

Consecutive walking / turning / shuffling bouts form one *gait sequence*. It starts
from both feet loaded (gait initiation: the leading foot pushes off, swings half a
stride and lands; the trailing foot follows with a full stride) and ends with a
closing step that brings the last foot alongside the other (half a stride). Between
them the feet alternate in antiphase with double support. The plan is continuous
time; sampling happens later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from insole_common.codec import SIDES, Side
from simulator.consts import STEPPING
from simulator.params import SimulationParams

#: heel-off and foot-flat as fractions of stance (the IMU is still between them)
U_HEEL_OFF = 0.60
U_FOOT_FLAT = 0.20
#: gait initiation: the leading foot leaves the ground this long after the bout starts
INIT_PUSH_OFF_S = 0.35
#: no heel strike closer than this to the end of a gait sequence
END_MARGIN_S = 0.6
MIN_DOUBLE_SUPPORT_S = 0.04
MIN_SWING_S = 0.15


@dataclass(frozen=True)
class StepProfile:
    """Nominal stepping of one activity."""

    stride_time_s: float
    stance_fraction: float
    stride_length_m: float
    #: first vertical-force peak, mid-stance minimum, second peak (body weights)
    peak1_bw: float
    valley_bw: float
    peak2_bw: float
    #: foot pitch at toe-off (toe down, +) and at heel strike (toe up, -), degrees
    pitch_to_deg: float
    pitch_hs_deg: float
    clearance_m: float


def step_profiles(p: SimulationParams) -> dict[str, StepProfile]:
    t = p.stride_time_s
    length = p.walking_stride_length_m
    speed = length / t
    scale = min(1.0, length / 1.3)
    walking = StepProfile(
        stride_time_s=t,
        # stance share grows as walking slows (Moticon sample: 0.60 fast .. 0.65 slow)
        stance_fraction=float(np.clip(0.61 + 0.05 * (t - 1.1), 0.57, 0.68)),
        stride_length_m=length,
        peak1_bw=float(np.clip(1.0 + 0.12 * speed, 1.05, 1.35)),
        valley_bw=float(np.clip(0.95 - 0.18 * speed, 0.55, 0.90)),
        peak2_bw=float(np.clip(1.02 + 0.08 * speed, 1.05, 1.25)),
        pitch_to_deg=float(np.clip(55.0 * length / 1.3, 10.0, 70.0)),
        pitch_hs_deg=-float(np.clip(18.0 * length / 1.3, 4.0, 25.0)),
        clearance_m=0.10 * scale + 0.02,
    )
    turning = StepProfile(
        stride_time_s=1.1 * t, stance_fraction=min(walking.stance_fraction + 0.04, 0.70),
        stride_length_m=0.45 * length, peak1_bw=1.05, valley_bw=0.85, peak2_bw=1.03,
        pitch_to_deg=25.0, pitch_hs_deg=-8.0, clearance_m=0.06,
    )
    shuffling = StepProfile(
        stride_time_s=0.95 * t, stance_fraction=0.74, stride_length_m=min(0.3, 0.22 * length),
        peak1_bw=0.98, valley_bw=0.90, peak2_bw=0.98, pitch_to_deg=8.0, pitch_hs_deg=-2.0, clearance_m=0.01,
    )
    return {"walking": walking, "turning": turning, "shuffling": shuffling}


class Stance(NamedTuple):
    """One full stance of a foot: followed by a swing and a later heel strike of the same foot."""

    hs: float
    to: float
    next_hs: float
    peak1: float
    valley: float
    peak2: float
    ml_jit: float
    ap_jit: float
    activity: str
    stride_length: float
    terminal: bool


_STANCE_FLOATS = tuple(n for n in Stance._fields if n not in ("activity", "terminal"))
_SWING_COLUMNS = ("sw_ho", "sw_to", "sw_hs", "sw_ff", "sw_d", "sw_dpsi", "sw_th_to", "sw_th_hs", "sw_clr")


@dataclass
class FootPlan:
    """Everything one foot does in the stepping bouts (time-ordered)."""

    stances: list[Stance] = field(default_factory=list)
    #: partial stances at the ends of gait sequences: dicts (see force.py)
    partials: list[dict] = field(default_factory=list)
    #: swings: heel-off, toe-off, heel strike, foot-flat, displacement, yaw change, pitch, clearance
    swings: list[tuple[float, ...]] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """One array per stance field (in field order) and per swing column (``sw_*``)."""
        out = {n: np.asarray([getattr(s, n) for s in self.stances], dtype=np.float64) for n in _STANCE_FLOATS}
        out["activity"] = np.asarray([s.activity for s in self.stances], dtype=object)
        out["terminal"] = np.asarray([s.terminal for s in self.stances], dtype=bool)
        sw = np.asarray(self.swings, dtype=np.float64).reshape(-1, len(_SWING_COLUMNS))
        for i, n in enumerate(_SWING_COLUMNS):
            out[n] = sw[:, i]
        return out


def gait_sequences(bouts: list[tuple[float, float, str]]) -> list[tuple[float, float, list[tuple[float, float, str]]]]:
    """Group consecutive stepping bouts: ``[(start_s, end_s, sub_bouts), ...]``."""
    seqs: list[tuple[float, float, list]] = []
    current: list[tuple[float, float, str]] = []
    for bout in [*bouts, (math.inf, math.inf, "standing")]:
        if bout[2] in STEPPING:
            current.append(bout)
        elif current:
            seqs.append((current[0][0], current[-1][1], current))
            current = []
    return seqs


_OTHER: dict[Side, Side] = {"L": "R", "R": "L"}


def plan_gait(bouts: list[tuple[float, float, str]], p: SimulationParams, rng: np.random.Generator) -> dict[Side, FootPlan]:
    """Plan every step of every gait sequence. Loops over steps (never over samples)."""
    profiles = step_profiles(p)
    asym = p.effective_asymmetry
    fac: dict[str, float] = {p.affected_side: 1.0 - asym / 2, _OTHER[p.affected_side]: 1.0 + asym / 2}
    plans = {s: FootPlan() for s in SIDES}

    def z() -> float:
        return float(np.clip(rng.standard_normal(), -2.5, 2.5))

    for a, b, subs in gait_sequences(bouts):
        lead = SIDES[int(rng.integers(2))]
        turn_sign = {i: (1.0 if rng.random() < 0.5 else -1.0) for i, s in enumerate(subs) if s[2] == "turning"}
        _plan_sequence(plans, a, b, subs, lead, turn_sign, profiles, fac, p, z)
    for plan in plans.values():
        plan.stances.sort(key=lambda st: st.hs)
        plan.swings.sort(key=lambda s: s[0])
    return plans


def _sub_at(subs: list[tuple[float, float, str]], t: float) -> int:
    """Index of the sub-bout of a gait sequence at time ``t`` (the last one after its end)."""
    for i, (_s0, s1, _) in enumerate(subs):
        if t < s1:
            return i
    return len(subs) - 1


def _phase(pr: StepProfile, fac: dict[str, float]) -> float:
    """Fraction of the stride from left heel strike to right heel strike (equal double supports)."""
    return 0.5 + pr.stance_fraction * (fac["L"] - fac["R"]) / 2


def _plan_sequence(plans: dict[Side, FootPlan], a: float, b: float, subs: list[tuple[float, float, str]], lead: Side,
                   turn_sign: dict[int, float], profiles: dict[str, StepProfile], fac: dict[str, float],
                   p: SimulationParams, z) -> None:
    """Plan the steps of the gait sequence ``[a, b)`` made of ``subs``, starting with foot ``lead``; ``z`` draws
    a clipped standard normal (the order of the draws fixes the simulation of a seed)."""
    cv = p.variability_cv
    pr0 = profiles[subs[0][2]]
    hs, feet = _heel_strikes(a, b, subs, lead, profiles, fac, cv, z)
    n = len(hs)
    subs_i = [_sub_at(subs, h) for h in hs]
    prs = [profiles[subs[i][2]] for i in subs_i]
    stance = _stances(hs, feet, prs, fac, cv, z)
    disp = _displacements(subs, subs_i, feet, prs, turn_sign, cv, z)
    dpsi = _yaw_changes(subs_i, feet, turn_sign, p.turn_angle_deg)
    first_to = _first_toe_offs(hs, lead, pr0, fac)
    for side in SIDES:
        plans[side].partials.append({
            "kind": "initial", "start": a, "end": first_to[side], "anchor": first_to[side],
            "stance_s": pr0.stance_fraction * pr0.stride_time_s * fac[side], "peak1": pr0.peak1_bw * fac[side],
            "valley": pr0.valley_bw * fac[side], "peak2": pr0.peak2_bw * fac[side], "ml_jit": 0.0,
        })
    for j in range(n):
        side, pr = feet[j], prs[j]
        plan = plans[side]
        loads = [x * fac[side] * (1.0 + cv * z()) for x in (pr.peak1_bw, pr.valley_bw, pr.peak2_bw)]
        ml_jit, ap_jit = 0.5 * cv * z(), 0.2 * cv * z()
        if j + 2 < n:
            plan.stances.append(Stance(
                hs=hs[j], to=hs[j] + stance[j], next_hs=hs[j + 2], peak1=loads[0], valley=loads[1], peak2=loads[2],
                ml_jit=ml_jit, ap_jit=ap_jit, activity=subs[subs_i[j]][2], stride_length=float(disp[j + 2]),
                terminal=j + 2 == n - 1,
            ))
        else:
            plan.partials.append({
                "kind": "final", "start": hs[j], "end": b, "anchor": hs[j], "stance_s": float(stance[j]),
                "peak1": loads[0], "valley": loads[1], "peak2": loads[2], "ml_jit": ml_jit,
            })
        # the swing that ends at this heel strike
        if j >= 2:
            to_prev, s_prev = hs[j - 2] + stance[j - 2], stance[j - 2]
        else:
            to_prev, s_prev = first_to[side], pr.stance_fraction * pr.stride_time_s
        ho = max(to_prev - (1.0 - U_HEEL_OFF) * s_prev, a + 0.02, (to_prev + a) / 2)
        ff = min(hs[j] + U_FOOT_FLAT * stance[j], b - 0.01)
        scale = disp[j] / pr.stride_length_m if pr.stride_length_m > 0 else 1.0
        plan.swings.append((ho, to_prev, hs[j], ff, float(disp[j]), float(dpsi[j]),
                            pr.pitch_to_deg * min(scale, 1.2), pr.pitch_hs_deg * min(scale, 1.2), pr.clearance_m))


def _heel_strikes(a: float, b: float, subs: list[tuple[float, float, str]], lead: Side,
                  profiles: dict[str, StepProfile], fac: dict[str, float], cv: float, z) -> tuple[list[float], list[Side]]:
    """Heel strikes of the sequence and their feet, alternating from ``lead``: the first after the gait
    initiation's push-off and swing, none closer than ``END_MARGIN_S`` to the end."""
    pr0 = profiles[subs[0][2]]
    t0 = pr0.stride_time_s
    hs = [a + INIT_PUSH_OFF_S + (1.0 - pr0.stance_fraction * fac[lead]) * t0]
    feet = [lead]
    while True:
        pr = profiles[subs[_sub_at(subs, hs[-1])][2]]
        stride = pr.stride_time_s * (1.0 + cv * math.sqrt(2.0) * z())
        ph = _phase(pr, fac)
        step = (ph if feet[-1] == "L" else 1.0 - ph) * stride
        if hs[-1] + step > b - END_MARGIN_S:
            break
        hs.append(hs[-1] + step)
        feet.append(_OTHER[feet[-1]])
    return hs, feet


def _stances(hs: list[float], feet: list[Side], prs: list[StepProfile], fac: dict[str, float], cv: float,
             z) -> np.ndarray:
    """Stance time of each heel strike, kept between a minimal double support and a minimal swing."""
    n = len(hs)
    stance = np.empty(n)
    for j in range(n):
        t_local = hs[j + 2] - hs[j] if j + 2 < n else prs[j].stride_time_s
        s = prs[j].stance_fraction * t_local * fac[feet[j]] * (1.0 + 0.5 * cv * z())
        if j + 1 < n:
            s = max(s, hs[j + 1] - hs[j] + MIN_DOUBLE_SUPPORT_S)
        if j + 2 < n:
            s = min(s, hs[j + 2] - hs[j] - MIN_SWING_S)
        stance[j] = s
    return stance


def _displacements(subs: list[tuple[float, float, str]], subs_i: list[int], feet: list[Side], prs: list[StepProfile],
                   turn_sign: dict[int, float], cv: float, z) -> np.ndarray:
    """Swing displacement ending at each heel strike: half a stride to start and to close; in a turn the inner
    foot steps shorter than the outer one."""
    n = len(feet)
    disp = np.array([prs[j].stride_length_m * (1.0 + cv * z()) for j in range(n)])
    for j in range(n):
        if subs[subs_i[j]][2] == "turning":
            inner = "L" if turn_sign[subs_i[j]] > 0 else "R"
            disp[j] *= 0.7 if feet[j] == inner else 1.3
    disp[0] *= 0.5
    if n >= 2:
        disp[n - 1] *= 0.5
    return disp


def _yaw_changes(subs_i: list[int], feet: list[Side], turn_sign: dict[int, float], turn_angle_deg: float) -> np.ndarray:
    """Yaw change of each swing: each foot turns the bout's whole angle over its swings that land in the bout."""
    n = len(feet)
    dpsi = np.zeros(n)
    for i, sign in turn_sign.items():
        for side in SIDES:
            js = [j for j in range(n) if subs_i[j] == i and feet[j] == side]
            for j in js:
                dpsi[j] = sign * math.radians(abs(turn_angle_deg)) / len(js)
    return dpsi


def _first_toe_offs(hs: list[float], lead: Side, pr0: StepProfile, fac: dict[str, float]) -> dict[str, float]:
    """Gait initiation: when each foot first leaves the ground (the leading foot before ``hs[0]``, the trailing
    one after it, with a minimal double support and swing)."""
    t0 = pr0.stride_time_s
    first_to: dict[str, float] = {}
    first_to[lead] = hs[0] - (1.0 - pr0.stance_fraction * fac[lead]) * t0
    ph0 = _phase(pr0, fac)
    back = (1.0 - ph0 if lead == "L" else ph0) * t0  # virtual trailing heel strike before hs[0]
    trail_to = hs[0] - back + pr0.stance_fraction * t0 * fac[_OTHER[lead]]
    if len(hs) >= 2:
        trail_to = min(trail_to, hs[1] - MIN_SWING_S)
    first_to[_OTHER[lead]] = max(trail_to, hs[0] + MIN_DOUBLE_SUPPORT_S)
    return first_to
