"""Per-foot analysis: the load, events and stride rows of one foot, its per-second load and yaw (for activity
labels) and the spans in which its sensor says nothing about walking (for bouts)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from insole_common.errors import ValidationError
from insole_common.layouts import SensorLayout
from processing.analytics.events import LoadEventDetector
from processing.analytics.span import SpanDetector
from processing.analytics.strides import channel_sums, empty_strides, stride_rows

#: a zero-based load unit: 0 means "foot in the air"
ZERO_BASED_UNITS = {"N", "kPa", "N/cm^2"}


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
        load = f if f is not None else self._buf["psum"]
        assert load is not None  # (every chunk has its channel sums)
        return load

    def _process(self, *, final: bool) -> pd.DataFrame:
        self._consolidate()
        pressure = self._buf.get("p")
        if pressure is None:
            return empty_strides()
        span = self._span
        if span is None:
            zb = self._zero_based
            if zb is None:
                zb = self.unit in ZERO_BASED_UNITS
            det = self._det
            p = det.params(self.fs)
            span = self._span = SpanDetector(type(p)(**{**p.__dict__, "zero_based": bool(zb)}))
        load = self._load()
        self._seconds(load, final)
        res = span.run(load, abs0=self.abs0, start=self.start, state0=self.state0, final=final)
        c = res.contacts
        n_str = max(c["hs_i"].size - 1, 0)
        new = None
        if n_str > 0:
            new = stride_rows(
                self.side, c, fs=self.fs, t0_s=self.t0_s, abs0=self.abs0, pressure=pressure,
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
            self._trim(span)
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

    def _trim(self, span: SpanDetector) -> None:
        B = span.p.block_n
        keep_from = max((self.start - span.p.search_n) // B - 3, 0) * B
        # blocks needed for levels still to be computed
        next_level_block = span.levels.last_final_block(self.n_abs) + 1
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
        span = self._span
        if span is None or not span.levels.flat:
            return []
        sp = span.levels
        return self._block_spans_s(span, [j for j in sorted(sp.flat) if sp.flat[j] >= min_share])

    def absent_intervals_s(self, *, within_s: tuple[float, float] | None = None,
                           min_share: float = 0.5) -> list[tuple[float, float]]:
        """Time spans (s) in which this foot's sensor says nothing about walking: blocks mostly made of flat
        seconds, blocks without enough usable samples for levels and seconds without one finite sample (the
        insole's data are missing), and, given the recording's whole span ``within_s``, the time before this
        foot's first sample and after its last."""
        span = self._span
        if span is None:
            return [within_s] if within_s else []
        sp = span.levels
        spans = self._block_spans_s(span, [j for j in sorted(sp.lo) if sp.flat.get(j, 0.0) >= min_share
                                           or not (np.isfinite(sp.lo[j]) and np.isfinite(sp.hi[j]))])
        t, load, _ = self.seconds()
        d = np.diff(np.r_[0, np.isnan(load).view(np.int8), 0])
        spans += [(float(t[i]), float(t[j - 1] + 1))
                  for i, j in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True)]
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

    def _block_spans_s(self, span: SpanDetector, blocks: list[int]) -> list[tuple[float, float]]:
        B = span.p.block_n
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
