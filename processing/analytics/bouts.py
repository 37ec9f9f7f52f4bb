"""Walking bouts and the activity between them (walking, standing, sitting, shuffling, turning).

* A **walking bout** is a run of strides of one foot, each starting at the
  previous one's end heel strike, at least ``MIN_CHAIN_STRIDES`` long, that
  overlaps such a run of the other foot (steps alternate). Where the other
  foot's sensor is flat or its data are missing (dead or disconnected:
  ``FootEngine.absent_intervals_s``; also before its first and after its last
  sample, when the feet's recordings differ in span), a run of at least ``MIN_CHAIN_STRIDES + 1``
  of a chain's strides lying within that span stands on its own, as for a
  single-foot recording. Strides outside bouts are rejected, so a lone step or a weight
  shift never becomes a stride.
* A foot whose largest amplitude in the whole recording is below
  ``DEAD_AMPLITUDE_FRACTION`` of the other foot's is a **dead sensor**
  (:func:`dead_feet`: one that never worked shows only its own noise, so the
  flat test, relative to the foot's own range, cannot see it): its "strides"
  are noise and are rejected, and the other foot walks alone throughout.
* Inside a bout, seconds whose mean absolute yaw rate (IMU z gyro, both feet)
  exceeds ``TURN_YAW_DPS`` are labelled **turning**.
* Between bouts, per-second loads decide: both feet loaded -> **standing**,
  both lightly loaded -> **sitting**, alternating partial unloading with
  rejected stride candidates -> **shuffling**.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from insole_common import metrics as C

MIN_CHAIN_STRIDES = 2
TURN_YAW_DPS = 60.0
#: fraction of the walking stance load above which a still foot counts as loaded (standing)
STANDING_LOAD_FRACTION = 0.25
#: a foot whose largest amplitude stays below this fraction of the other foot's is a dead sensor: whatever the
#: gait, each foot carries the body's weight in its stances (an antalgic gait offloads a painful foot by tens
#: of percent, not by 95 %), while a dead FSR shows a few ADC counts against the other foot's thousands
DEAD_AMPLITUDE_FRACTION = 0.05


def dead_feet(engines: dict) -> frozenset[str]:
    """Feet of a bilateral recording whose largest loaded - unloaded amplitude is below
    ``DEAD_AMPLITUDE_FRACTION`` of the other foot's (a sensor that never worked, or no data at all). Only
    amplitudes of the same kind compare: both feet in one unit, both total force or both channel sums."""
    if len(engines) < 2:
        return frozenset()
    kinds = {(e.unit, e.uses_total_force) for e in engines.values()}
    if len(kinds) > 1:
        return frozenset()
    amp = {s: e.amplitude_max() for s, e in engines.items()}
    return frozenset(s for s in amp
                     if amp[s] < DEAD_AMPLITUDE_FRACTION * max(a for s2, a in amp.items() if s2 != s))


def _chains(t: pd.DataFrame) -> list[tuple[int, int]]:
    """Runs of contiguous strides (row positions, inclusive) in a one-side table sorted by time."""
    if t.empty:
        return []
    hs = t[C.HEEL_STRIKE_S].to_numpy()
    nhs = t[C.NEXT_HEEL_STRIKE_S].to_numpy()
    brk = np.r_[True, np.abs(hs[1:] - nhs[:-1]) > 1e-6]
    starts = np.where(brk)[0]
    ends = np.r_[starts[1:] - 1, len(t) - 1]
    return list(zip(starts, ends, strict=True))


def detect_bouts(strides: pd.DataFrame, engines: dict, *, dead: frozenset[str] | None = None
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    bout_id = np.full(len(strides), -1, dtype=np.int64)
    sides = sorted(strides[C.SIDE].unique()) if len(strides) else []
    bilateral = len(engines) >= 2
    intervals: dict[str, list[tuple[float, float, np.ndarray]]] = {}
    for side in sides:
        idx = np.where(strides[C.SIDE].to_numpy() == side)[0]
        t = strides.iloc[idx]
        hs, nhs = t[C.HEEL_STRIKE_S].to_numpy(float), t[C.NEXT_HEEL_STRIKE_S].to_numpy(float)
        out = []
        for a, b in _chains(t):
            if b - a + 1 >= (MIN_CHAIN_STRIDES if bilateral else MIN_CHAIN_STRIDES + 1):
                out.append((float(hs[a]), float(nhs[b]), idx[a : b + 1]))
        intervals[side] = out
    dead = dead_feet(engines) if dead is None else dead
    absent = {}
    if bilateral:  # (before a foot's first sample and after its last one, its data are missing too)
        spans = [e.span_s() for e in engines.values()]
        whole = (min(a for a, _ in spans), max(b for _, b in spans))
        absent = {s: e.absent_intervals_s(within_s=whole) for s, e in engines.items()}
    kept: list[tuple[float, float, np.ndarray]] = []
    for side, chains in intervals.items():
        if side in dead:
            continue
        others = [iv for s2, ivs in intervals.items() if s2 != side for iv in ivs]
        other_absent = [iv for s2, ivs in absent.items() if s2 != side for iv in ivs]
        other_dead = any(s2 in dead for s2 in engines if s2 != side)
        for s, e, rows in chains:
            alone = len(rows) >= MIN_CHAIN_STRIDES + 1 and other_dead
            if not bilateral or alone or any(s < e2 and s2 < e for s2, e2, _ in others):
                kept.append((s, e, rows))
            elif other_absent:  # runs of >= MIN_CHAIN_STRIDES + 1 of its strides that lie where the other foot is absent
                hs_r = strides[C.HEEL_STRIKE_S].to_numpy(float)[rows]
                nhs_r = strides[C.NEXT_HEEL_STRIKE_S].to_numpy(float)[rows]
                inside = np.zeros(rows.size, bool)
                for a, b in other_absent:
                    inside |= (a <= hs_r) & (nhs_r <= b)
                edges = np.diff(np.r_[0, inside.view(np.int8), 0])
                for i, j in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
                    if j - i >= MIN_CHAIN_STRIDES + 1:
                        kept.append((float(hs_r[i]), float(nhs_r[j - 1]), rows[i:j]))
    kept.sort(key=lambda r: r[0])
    merged: list[list] = []
    for s, e, rows in kept:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
            merged[-1][2].append(rows)
        else:
            merged.append([s, e, [rows]])
    records = []
    for bout_i, (s, e, rows) in enumerate(merged):
        r = np.concatenate(rows)
        bout_id[r] = bout_i
        records.append({"start_s": s, "end_s": e, "activity": "walking", "n_strides": int(r.size)})
    bouts = pd.DataFrame(records, columns=C.BOUT_COLS)
    bouts = _label_rest(bouts, strides, bout_id, engines)
    return bouts, bout_id


def _label_rest(walk: pd.DataFrame, strides: pd.DataFrame, bout_id: np.ndarray, engines: dict) -> pd.DataFrame:
    secs = {s: e.seconds() for s, e in engines.items()}
    if not secs or all(v[0].size == 0 for v in secs.values()):
        return walk
    t0 = min(float(v[0][0]) for v in secs.values() if v[0].size)
    n = max(v[0].size for v in secs.values())
    load = np.full((len(secs), n), np.nan)
    yaw = np.full((len(secs), n), np.nan)
    for i, (t, l_, y) in enumerate(secs.values()):
        load[i, : t.size] = l_
        yaw[i, : t.size] = y
    tt = t0 + np.arange(n)
    label = np.full(n, "no_data", dtype=object)
    in_walk = np.zeros(n, bool)
    for s, e in zip(walk.start_s, walk.end_s, strict=True):
        in_walk |= (tt + 1 > s) & (tt < e)
    # stance load level from walking strides (peak loads not always available): use 90th pct of per-second load
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a foot without any data: its reference is NaN
        ref = np.nanpercentile(load, 90, axis=1, keepdims=True) if np.isfinite(load).any() else np.ones((len(secs), 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = load / ref
    both_loaded = np.all(rel >= STANDING_LOAD_FRACTION * 2, axis=0)
    finite = np.all(np.isfinite(rel), axis=0)
    label[finite & ~in_walk] = "sitting"
    label[finite & ~in_walk & both_loaded] = "standing"
    rejected = strides[bout_id < 0]
    for hs, nhs in zip(rejected[C.HEEL_STRIKE_S], rejected[C.NEXT_HEEL_STRIKE_S], strict=True):
        label[(tt + 1 > hs) & (tt < nhs) & ~in_walk & finite] = "shuffling"
    label[in_walk] = "walking"
    turning = in_walk & (np.nanmean(np.abs(yaw), axis=0) > TURN_YAW_DPS) if np.isfinite(yaw).any() else np.zeros(n, bool)
    label[turning] = "turning"
    # run-length encode
    chg = np.r_[True, label[1:] != label[:-1]]
    st = np.where(chg)[0]
    en = np.r_[st[1:], n]
    rows = []
    for a, b in zip(st, en, strict=True):
        act = label[a]
        if act == "walking":
            continue
        rows.append({"start_s": float(tt[a]), "end_s": float(tt[b - 1] + 1), "activity": act, "n_strides": 0})
    out = pd.concat([walk, pd.DataFrame(rows, columns=C.BOUT_COLS)], ignore_index=True) if rows else walk
    return out.sort_values("start_s", kind="mergesort").reset_index(drop=True)
