"""Whole-recording analysis and its per-foot engine."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from insole_common.errors import ValidationError
from insole_common.layouts import SensorLayout
from insole_common.recording import Recording
from processing.analytics import consts as C
from processing.analytics.bouts import dead_feet, detect_bouts
from processing.analytics.events import LoadEventDetector, SpanDetector
from processing.analytics.strides import channel_sums, empty_strides, stride_rows
from processing.readers.grid import DROP_REASONS  # the readers' vocabulary (grid.py does no I/O)

#: a zero-based load unit: 0 means "foot in the air"
ZERO_BASED_UNITS = {"N", "kPa", "N/cm^2"}


@dataclass(frozen=True)
class Calibration:
    """Stride length from a calibration walk (e.g. a 10-metre walk test) for insoles without an IMU.

    ``stride_length_m`` and ``stride_time_s`` are the calibration walk's mean
    stride. Other strides are scaled as ``L = L_cal * (T_cal / T) ** exponent``:
    with the default exponent 1 the distance covered per unit time of a stride
    is constant. A coarse model; docs/analytics.md discusses its error.
    """

    stride_length_m: float
    stride_time_s: float
    exponent: float = 1.0

    def __post_init__(self) -> None:
        if not (self.stride_length_m > 0 and self.stride_time_s > 0):
            raise ValidationError("calibration stride length and time must be positive", reason="bad_calibration")

    @classmethod
    def from_walk(cls, strides: pd.DataFrame, *, distance_m: float, n_strides: float | None = None,
                  exponent: float = 1.0) -> "Calibration":
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
    """Output of :func:`analyze`: ``strides`` (one row per stride, columns in consts),
    ``bouts`` (start_s, end_s, activity, n_strides), ``summary`` (JSON-ready dict)."""

    strides: pd.DataFrame
    bouts: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


class FootEngine:
    """Per-foot analysis; :func:`analyze` feeds it the whole foot at once, then finishes it."""

    def __init__(self, side: str, *, sampling_rate_hz: float, t0_s: float, layout: SensorLayout | None,
                 pressure_unit: str, n_channels: int, zero_based: bool | None = None,
                 detector: LoadEventDetector | None = None) -> None:
        self.side = side
        self.fs = float(sampling_rate_hz)
        self.t0_s = float(t0_s)
        self.layout = layout
        self.unit = pressure_unit
        self.n_channels = n_channels
        det = detector or LoadEventDetector()
        self.uses_total_force: bool | None = None
        self._zero_based = zero_based
        self._det = det
        self._span: SpanDetector | None = None
        self._chunks: dict[str, list[np.ndarray]] = {}
        self._buf: dict[str, np.ndarray | None] = {}
        self.abs0 = 0  # absolute index of the buffer's first sample
        self.n_abs = 0
        self.start = 0
        self.state0 = math.nan
        self.strides: list[pd.DataFrame] = []
        self.finished = False
        self.stats = {"samples_n": 0, "missing_n": 0, "saturated_n": 0}
        self._sec_n = max(int(round(self.fs)), 1)
        self._sec_done = 0  # absolute sample index up to which per-second summaries exist
        self._sec_load: list[np.ndarray] = []
        self._sec_yaw: list[np.ndarray] = []

    # ---- input ----
    def feed(self, pressure: np.ndarray, *, total_force_n=None, acc_g=None, gyro_dps=None, cop_ap=None,
             cop_ml=None) -> pd.DataFrame:
        if self.finished:
            raise ValidationError(f"{self.side}: stream already finished", reason="finished")
        p = np.asarray(pressure, dtype=np.float64)
        if p.ndim == 1:
            p = p[:, None]
        if p.ndim != 2 or p.shape[1] != self.n_channels:
            raise ValidationError(f"{self.side}: expected (n, {self.n_channels}) pressure, got {p.shape}", reason="bad_shape")
        n = p.shape[0]
        use_total = total_force_n is not None
        if self.uses_total_force is None:
            self.uses_total_force = use_total
        elif self.uses_total_force != use_total:
            raise ValidationError(f"{self.side}: total force present in some chunks only", reason="inconsistent_stream")
        parts = {"p": p, "f": None if total_force_n is None else np.asarray(total_force_n, float).reshape(n),
                 "acc": None if acc_g is None else np.asarray(acc_g, float).reshape(n, 3),
                 "gyr": None if gyro_dps is None else np.asarray(gyro_dps, float).reshape(n, 3),
                 "cap": None if cop_ap is None else np.asarray(cop_ap, float).reshape(n),
                 "cml": None if cop_ml is None else np.asarray(cop_ml, float).reshape(n)}
        for k, v in parts.items():
            if v is not None:
                self._chunks.setdefault(k, []).append(v)
            elif k in self._chunks:
                raise ValidationError(f"{self.side}: channel {k} missing from a chunk", reason="inconsistent_stream")
        self.n_abs += n
        self.stats["samples_n"] += n
        psum, q = channel_sums(p, self.layout)  # one pass over the channels for the load and stance sums
        self._chunks.setdefault("psum", []).append(psum)
        if q is not None:
            self._chunks.setdefault("q", []).append(q)
        cand = np.isnan(psum)  # a missing sample has every channel NaN: check only rows with a NaN
        self.stats["missing_n"] += int(np.isnan(p[cand]).all(axis=1).sum()) if cand.any() else 0
        return self._process(final=False)

    def finish(self) -> pd.DataFrame:
        out = self._process(final=True)
        self.finished = True
        return out

    # ---- core ----
    def _consolidate(self) -> None:
        for k, chunks in self._chunks.items():
            if chunks:
                prev = self._buf.get(k)
                arrs = ([prev] if prev is not None else []) + chunks
                self._buf[k] = arrs[0] if len(arrs) == 1 else np.concatenate(arrs)
                self._chunks[k] = []

    def _load(self) -> np.ndarray:
        f = self._buf.get("f")
        if f is not None:
            return f
        return self._buf["psum"]

    def _process(self, *, final: bool) -> pd.DataFrame:
        self._consolidate()
        if self._buf.get("p") is None:
            return empty_strides()
        if self._span is None:
            zb = self._zero_based
            if zb is None:
                zb = self.unit in ZERO_BASED_UNITS
            det = self._det
            p = det.params(self.fs)
            self._span = SpanDetector(type(p)(**{**p.__dict__, "zero_based": bool(zb)}))
        load = self._load()
        self._seconds(load, final)
        res = self._span.run(load, abs0=self.abs0, start=self.start, state0=self.state0, final=final)
        c = res.contacts
        n_str = max(c["hs_i"].size - 1, 0)
        new = None
        if n_str > 0:
            new = stride_rows(
                self.side, c, fs=self.fs, t0_s=self.t0_s, abs0=self.abs0, pressure=self._buf["p"],
                layout=self.layout, load_unit=self.unit,
                cop_ap=self._buf.get("cap"), cop_ml=self._buf.get("cml"), acc_g=self._buf.get("acc"),
                gyro_dps=self._buf.get("gyr"), n_strides=n_str, channel_q=self._buf.get("q"))
            self.strides.append(new)
            self.start = int(c["on_i"][n_str])
            self.state0 = 0.0
        elif c["hs_i"].size == 0 and not final:
            # nothing pending: jump the state machine forward when the foot is surely in swing
            pass
        if not final:
            self._trim()
        return new if new is not None else empty_strides()

    def _seconds(self, load: np.ndarray, final: bool) -> None:
        """Per-second mean load and mean |yaw rate| (for activity labels), for whole seconds received."""
        S = self._sec_n
        end = self.n_abs if final else (self.n_abs // S) * S
        if end <= self._sec_done:
            return
        a, b = self._sec_done - self.abs0, end - self.abs0
        seg = load[a:b]
        m = -(-seg.size // S)
        pad = np.full(m * S, np.nan)
        pad[: seg.size] = seg
        self._sec_load.append(_row_nanmean(pad.reshape(m, S)))
        gyr = self._buf.get("gyr")
        if gyr is not None:
            g = np.full(m * S, np.nan)
            g[: seg.size] = np.abs(gyr[a:b, 2])
            self._sec_yaw.append(_row_nanmean(g.reshape(m, S)))
        else:
            self._sec_yaw.append(np.full(m, np.nan))
        self._sec_done = end

    def seconds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        load = np.concatenate(self._sec_load) if self._sec_load else np.zeros(0)
        yaw = np.concatenate(self._sec_yaw) if self._sec_yaw else np.zeros(0)
        return self.t0_s + np.arange(load.size), load, yaw

    def _trim(self) -> None:
        B = self._span.p.block_n
        keep_from = max((self.start - self._span.p.search_n) // B - 3, 0) * B
        # blocks needed for levels still to be computed
        next_level_block = self._span.levels.last_final_block(self.n_abs) + 1
        keep_from = min(keep_from, max(next_level_block - 2, 0) * B, (self._sec_done // B) * B)
        cut = keep_from - self.abs0
        if cut <= 0:
            return
        for k, v in self._buf.items():
            if v is not None:
                self._buf[k] = v[cut:].copy()
        self.abs0 = keep_from

    def flat_intervals_s(self, *, min_share: float = 0.5) -> list[tuple[float, float]]:
        """Time spans (s) of blocks mostly made of flat seconds (dead or disconnected sensor, see
        ``BlockLevels.update``)."""
        sp = self._span.levels if self._span is not None else None
        if sp is None or not sp.flat:
            return []
        return self._block_spans_s([j for j in sorted(sp.flat) if sp.flat[j] >= min_share])

    def absent_intervals_s(self, *, within_s: tuple[float, float] | None = None,
                           min_share: float = 0.5) -> list[tuple[float, float]]:
        """Time spans (s) in which this foot's sensor says nothing about walking: blocks mostly made of flat
        seconds, blocks without enough usable samples for levels and seconds without one finite sample (the
        insole's data are missing), and, given the recording's whole span ``within_s``, the time before this
        foot's first sample and after its last."""
        sp = self._span.levels if self._span is not None else None
        if sp is None:
            return [within_s] if within_s else []
        spans = self._block_spans_s([j for j in sorted(sp.lo) if sp.flat.get(j, 0.0) >= min_share
                                     or not (np.isfinite(sp.lo[j]) and np.isfinite(sp.hi[j]))])
        t, load, _ = self.seconds()
        d = np.diff(np.r_[0, np.isnan(load).view(np.int8), 0])
        spans += [(float(t[i]), float(t[j - 1] + 1)) for i, j in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1))]
        if within_s is not None:
            a, b = self.span_s()
            spans += [iv for iv in ((within_s[0], a), (b, within_s[1])) if iv[1] > iv[0]]
        return _merge_spans(spans)

    def span_s(self) -> tuple[float, float]:
        """Start and end (s) of the samples received."""
        return self.t0_s, self.t0_s + self.n_abs / self.fs

    def amplitude_max(self) -> float:
        """The largest loaded - unloaded level difference of any block (0 when no block has levels)."""
        sp = self._span
        return max(sp.levels.amp_max.values(), default=0.0) if sp is not None else 0.0

    def _block_spans_s(self, blocks: list[int]) -> list[tuple[float, float]]:
        B = self._span.p.block_n
        return _merge_spans([(self.t0_s + j * B / self.fs, self.t0_s + (j + 1) * B / self.fs) for j in blocks])

    def stride_table(self) -> pd.DataFrame:
        if not self.strides:
            return empty_strides()
        frames = [s for s in self.strides if not s.empty]
        return pd.concat(frames, ignore_index=True) if frames else empty_strides()


def _merge_spans(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping or touching time spans joined, in order."""
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1] + 1e-9:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _row_nanmean(x: np.ndarray) -> np.ndarray:
    """``np.nanmean(x, axis=1)`` (NaN for all-NaN rows) via two matrix-vector products."""
    ok = np.isfinite(x)
    ones = np.ones(x.shape[1])
    n = ok.astype(np.float64) @ ones
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, x, 0.0) @ ones / n, np.nan)


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
        for a, b in zip(pos[st], pos[en]):  # runs at the maximum (few)
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
    summary = _summary(strides, bouts, engines, meta, n_candidates=n_candidates, rejected=rejected, dead=dead)
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


def symmetry_index(left: float, right: float) -> float:
    """Robinson symmetry index in percent: 100 * (L - R) / (0.5 * (L + R)); 0 = symmetric."""
    if not (np.isfinite(left) and np.isfinite(right)) or (left + right) == 0:
        return float("nan")
    return float(100.0 * (left - right) / (0.5 * (left + right)))


def _f(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return None if not np.isfinite(x) else round(float(x), 6)
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def _summary(strides, bouts, engines, meta, *, n_candidates, rejected, dead=frozenset()) -> dict[str, Any]:
    s: dict[str, Any] = {"source_format": meta.get("source_format"), "strides_n": int(len(strides)),
                         "stride_candidates_n": int(n_candidates), "strides_rejected_outside_bouts_n": rejected}
    per_side = {}
    cols = [C.STRIDE_TIME_S, C.STANCE_TIME_S, C.SWING_TIME_S, C.STANCE_PCT, C.DOUBLE_SUPPORT_S,
            C.CADENCE_STEPS_PER_MIN, C.STRIDE_LENGTH_M, C.GAIT_SPEED_M_S, C.COP_ML_MEAN_FW,
            C.LATERAL_LOAD_FRACTION, C.HEEL_LOAD_FRACTION, C.MIDFOOT_LOAD_FRACTION, C.FOREFOOT_LOAD_FRACTION,
            C.PEAK_HEEL_LOAD]
    side_arr = strides[C.SIDE].to_numpy(dtype=object)
    vals = strides[cols].to_numpy(dtype=np.float64)
    for side in ("L", "R"):
        v = vals[side_arr == side]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: mean is NaN, reported as None
            means = np.nanmean(v, axis=0) if len(v) else None
        per_side[side] = {"strides_n": int(len(v)),
                          **{f"mean_{c}": _f(means[i]) if len(v) else None for i, c in enumerate(cols)}}
    s["per_side"] = per_side
    if len(strides):
        s["mean_stride_time_s"] = _f(strides[C.STRIDE_TIME_S].mean())
        s["cadence_steps_per_min"] = _f(120.0 / strides[C.STRIDE_TIME_S].median())
        s["mean_stride_length_m"] = _f(strides[C.STRIDE_LENGTH_M].astype(float).mean())
        s["mean_gait_speed_m_s"] = _f(strides[C.GAIT_SPEED_M_S].astype(float).mean())
        s["stride_time_cv_pct"] = _f(100 * strides[C.STRIDE_TIME_S].std() / strides[C.STRIDE_TIME_S].mean()) if len(strides) > 2 else None
    s["symmetry_index_pct"] = {c: _f(symmetry_index(per_side["L"][f"mean_{c}"] or np.nan, per_side["R"][f"mean_{c}"] or np.nan))
                               for c in (C.STRIDE_TIME_S, C.STANCE_TIME_S, C.SWING_TIME_S, C.STRIDE_LENGTH_M,
                                         C.PEAK_HEEL_LOAD)}
    s["walking_time_s"] = _f(float((bouts.loc[bouts.activity == "walking", "end_s"] - bouts.loc[bouts.activity == "walking", "start_s"]).sum())) if len(bouts) else 0.0
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
