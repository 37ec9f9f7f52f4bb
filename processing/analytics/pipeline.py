"""Whole-recording analysis: one ``FootEngine`` per foot (foot_engine.py), then both feet together (double
support, stride length, bouts, summary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from insole_common import metrics as C
from insole_common.errors import ValidationError
from insole_common.recording import Recording
from processing.analytics.bouts import dead_feet, detect_bouts
from processing.analytics.events import LoadEventDetector
from processing.analytics.foot_engine import ZERO_BASED_UNITS, FootEngine
from processing.analytics.strides import empty_strides
from processing.analytics.summary import build_summary
from processing.readers.grid import DROP_REASONS  # the readers' vocabulary (grid.py does no I/O)

__all__ = ["READER_QUALITY_KEYS", "ZERO_BASED_UNITS", "Calibration", "FootEngine", "GaitResult", "analyze",
           "engines_for", "finalize"]


@dataclass(frozen=True)
class Calibration:
    """Stride length from a calibration walk (e.g. a 10-metre walk test) for insoles without an IMU, per stride.

    ``stride_length_m`` and ``stride_time_s`` are the calibration walk's mean
    stride. Other strides are scaled as ``L = L_cal * (T_cal / T) ** exponent``.
    With the default exponent 1 this is the constant walk-ratio model: stride length
    proportional to cadence (120 / T), i.e. step length / cadence constant for the person
    (Sekiya & Nagasaki 1998; :mod:`processing.analytics.walk_ratio`, which the detector uses
    per day from the patient's stored calibration). A slower stride (longer T) is a shorter
    one; a stride shortened at the same cadence is not seen (that needs the IMU).
    """

    stride_length_m: float
    stride_time_s: float
    exponent: float = 1.0

    def __post_init__(self) -> None:
        if not (self.stride_length_m > 0 and self.stride_time_s > 0):
            raise ValidationError("calibration stride length and time must be positive", reason="bad_calibration")

    @classmethod
    def from_walk(cls, strides: pd.DataFrame, *, distance_m: float, n_strides: float | None = None,
                  exponent: float = 1.0) -> Calibration:
        """From the strides of a walk over ``distance_m`` (``n_strides`` counted strides; default: the
        number of complete strides per foot detected)."""
        if strides.empty:
            raise ValidationError("calibration walk has no strides", reason="bad_calibration")
        n = n_strides if n_strides is not None else strides.groupby(C.SIDE).size().mean()
        return cls(stride_length_m=distance_m / float(n), stride_time_s=float(strides[C.STRIDE_TIME_S].mean()),
                   exponent=exponent)

    def stride_length(self, stride_time_s: np.ndarray) -> np.ndarray:
        return self.stride_length_m * (self.stride_time_s / np.asarray(stride_time_s)) ** self.exponent


@dataclass
class GaitResult:
    """Output of :func:`analyze`: ``strides`` (one row per stride, columns in insole_common.metrics),
    ``bouts`` (start_s, end_s, activity, n_strides), ``summary`` (JSON-ready dict)."""

    strides: pd.DataFrame
    bouts: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def engines_for(recording: Recording, detector: LoadEventDetector | None = None) -> dict[str, FootEngine]:
    return {side: FootEngine(side, sampling_rate_hz=foot.sample_rate_hz, t0_s=foot.t0_s, layout=foot.layout,
                             pressure_unit=foot.pressure_unit, n_channels=foot.pressure.shape[1], detector=detector)
            for side, foot in recording.feet.items()}


def analyze(recording: Recording, *, calibration: Calibration | None = None,
            detector: LoadEventDetector | None = None) -> GaitResult:
    """Analyse a whole recording. Raises ValidationError for unusable input (empty, no finite data)."""
    _check_recording(recording)
    engines = engines_for(recording, detector)
    for side, foot in recording.feet.items():
        e = engines[side]
        e.feed(foot.pressure, total_force_n=foot.total_force_n, acc_g=foot.acc_g, gyro_dps=foot.gyro_dps,
               cop_ap=foot.cop_ap, cop_ml=foot.cop_ml)
        e.finish()
        e.stats["saturated_n"] = _saturated_samples(foot.pressure)
    return finalize(engines, calibration=calibration, meta={"source_format": recording.source_format,
                                                            "has_imu": {s: f.has_imu for s, f in recording.feet.items()},
                                                            "reader": _reader_quality(recording.meta)})


#: what the readers report about a file's defects (processing/readers): the only metadata summary.json repeats
READER_QUALITY_KEYS = frozenset({"truncated", "dropped_samples_n", "rows_dropped_n", "rows_dropped_by_reason_n",
                                 "repeated_time_stamps_n", "non_numeric_cells_n", "vendor_events_skipped_n"})


def _reader_quality(meta: dict) -> dict[str, Any]:
    """What the reader found wrong with the file (its ``truncated`` flag and counts of dropped rows, samples,
    cells); nothing else of the file's metadata, which may name the person, goes into the summary: known keys
    only, with a count or a dict of counts keyed by side or by a reader's drop reason."""
    def count(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    def ok(k: str, v: Any) -> bool:
        if k == "truncated":
            return isinstance(v, (bool, np.bool_))
        if isinstance(v, dict):
            return all(x in DROP_REASONS or x in ("L", "R") for x in v) and all(count(x) for x in v.values())
        return count(v)

    return {k: v for k, v in meta.items() if k in READER_QUALITY_KEYS and ok(k, v)}


def _check_recording(recording: Recording) -> None:
    """An empty foot is an error; a foot without one finite sample (an insole that never sent data) is not, as
    long as the other foot has some: it is flagged ``no_data_<side>`` and the other foot walks alone."""
    for side, foot in recording.feet.items():
        if foot.n_samples == 0:
            raise ValidationError(f"{side}: recording has no samples", reason="empty")
    if not any(np.isfinite(f.pressure[:1000]).any() or np.isfinite(f.pressure).any() for f in recording.feet.values()):
        raise ValidationError(f"{'/'.join(recording.feet)}: recording has no finite samples", reason="no_data")


def _column_max(p: np.ndarray, rows_per_pass: int = 64) -> np.ndarray:
    """Per-column maximum ignoring NaN of a C-ordered (n, c) array. Reducing a wide view
    ``(n / k, k * c)`` is several times faster than ``axis=0`` on the narrow array."""
    n, c = p.shape
    k = rows_per_pass
    m = (n // k) * k
    parts = []
    if m:
        parts.append(np.fmax.reduce(p[:m].reshape(-1, k * c), axis=0).reshape(k, c))
    if n > m:
        parts.append(p[m:])
    return np.fmax.reduce(np.concatenate(parts), axis=0)


def _saturated_samples(pressure: np.ndarray, *, min_run_n: int = 10) -> int:
    """Samples whose centred window of ``min_run_n`` samples has a loaded channel stuck at its own maximum
    (clipping); the same count as a moving-window test per channel, found from the few samples at the maximum."""
    p = np.ascontiguousarray(pressure)
    if p.shape[0] < min_run_n:
        return 0
    mx = _column_max(p)
    thr = np.where(mx > 0, mx, np.inf)
    # a run of >= min_run_n samples contains a row whose index is a multiple of `step`: look for candidates on
    # those rows only, then examine the full signal around them
    step = max(min_run_n - 1, 1)
    hit = np.flatnonzero(p[::step] == thr)
    hits = np.zeros(p.shape[0], bool)
    if hit.size == 0:
        return 0
    rows, chans = np.divmod(hit, p.shape[1])
    rows *= step
    for c in np.unique(chans):  # loop over channels, not samples
        near = np.unique((rows[chans == c][:, None] + np.arange(-step, step + 1)[None, :]).ravel())
        near = near[(near >= 0) & (near < p.shape[0])]
        pos = near[p[near, c] == thr[c]]
        if pos.size < min_run_n:
            continue
        brk = np.flatnonzero(np.diff(pos) != 1)
        st, en = np.r_[0, brk + 1], np.r_[brk, pos.size - 1]
        h1 = min_run_n // 2
        h2 = min_run_n - 1 - h1
        for a, b in zip(pos[st], pos[en], strict=True):  # runs at the maximum (few)
            if b - a + 1 >= min_run_n:
                hits[a + h1 : b - h2 + 1] = True  # samples whose centred min_run_n window is all at the maximum
    return int(hits.sum())


def finalize(engines: dict[str, FootEngine], *, calibration: Calibration | None, meta: dict) -> GaitResult:
    """Combine the per-foot stride tables: double support, stride length, bouts, symmetry, summary."""
    tables = {s: e.stride_table() for s, e in engines.items()}
    frames = [t for t in tables.values() if not t.empty]
    strides = pd.concat(frames, ignore_index=True) if frames else empty_strides()
    strides = strides.sort_values([C.HEEL_STRIKE_S, C.SIDE], kind="mergesort").reset_index(drop=True)
    _double_support(strides)
    if calibration is not None and len(strides):
        need = ~np.isfinite(strides[C.STRIDE_LENGTH_M].to_numpy(float))
        strides.loc[need, C.STRIDE_LENGTH_M] = calibration.stride_length(strides.loc[need, C.STRIDE_TIME_S].to_numpy())
        strides.loc[need, C.STRIDE_LENGTH_SOURCE] = "calibration"
    strides[C.GAIT_SPEED_M_S] = strides[C.STRIDE_LENGTH_M] / strides[C.STRIDE_TIME_S]
    n_candidates = len(strides)
    dead = dead_feet(engines)
    bouts, bout_id = detect_bouts(strides, engines, dead=dead)
    strides[C.BOUT_ID] = bout_id
    rejected = int((bout_id < 0).sum())
    strides = strides[bout_id >= 0].reset_index(drop=True)
    summary = build_summary(strides, bouts, engines, meta, n_candidates=n_candidates, rejected=rejected, dead=dead)
    return GaitResult(strides=strides[C.STRIDE_COLS], bouts=bouts, summary=summary)


def _double_support(strides: pd.DataFrame) -> None:
    if strides.empty:
        return
    side = strides[C.SIDE].to_numpy(dtype=object)
    if len(set(side.tolist())) < 2:
        return
    hs_all = strides[C.HEEL_STRIKE_S].to_numpy(float)
    to_all = strides[C.TOE_OFF_S].to_numpy(float)
    ds_all = np.full(hs_all.size, np.nan)
    for me_side, other in (("L", "R"), ("R", "L")):
        me, o = side == me_side, side == other
        o_hs, o_to = np.sort(hs_all[o]), np.sort(to_all[o])
        hs, to = hs_all[me], to_all[me]
        # initial double support: from my heel strike to the other foot's next toe off
        j = np.searchsorted(o_to, hs)
        ini = np.where(j < o_to.size, o_to[np.minimum(j, o_to.size - 1)] - hs, np.nan)
        ini = np.where((ini >= 0) & (ini < to - hs), ini, np.nan)
        # terminal double support: from the other foot's heel strike (within my stance) to my toe off
        k = np.searchsorted(o_hs, hs, side="right")
        ths = np.where(k < o_hs.size, o_hs[np.minimum(k, o_hs.size - 1)], np.nan)
        ter = np.where((ths < to), to - ths, np.nan)
        ds_all[me] = ini + ter
    strides[C.DOUBLE_SUPPORT_S] = ds_all
    strides[C.DOUBLE_SUPPORT_PCT] = 100 * ds_all / strides[C.STRIDE_TIME_S].to_numpy(float)
