"""Initial contact (heel strike) and toe off per foot from the total load signal.

Method (docs/analytics.md):

1. **Local levels.** The recording is cut into blocks of ``block_s`` aligned to
   sample 0. For block *j* the unloaded / loaded levels are the ``low_pct`` /
   ``high_pct`` percentiles of blocks *j-1 .. j+1*; per-sample levels are linearly
   interpolated between block centres. This follows slow baseline drift (FSR
   sensors drift by more than half their range over minutes) and makes the
   detector indifferent to units and offsets.
2. **Gait-capable blocks.** A block can hold steps only if its amplitude is at
   least ``min_relative_amplitude`` of the largest amplitude seen so far (up to
   block *j+1*), and, for load signals whose zero means "unloaded" (newtons,
   kPa), if its unloaded level is below ``max_unloaded_fraction`` of its
   loaded level (standing never unloads a foot).
3. **Contacts by hysteresis.** A foot is in contact from the sample where the
   normalised load rises above ``on_fraction`` until it falls below
   ``off_fraction``. Swings shorter than ``min_swing_ms`` are merged (sensor
   noise), contacts shorter than ``min_stance_ms`` dropped.
4. **Sub-sample events, zero-based load** (newtons, kPa: zero means unloaded).
   Heel strike is where the load leaves ``zero_level_fraction`` of the
   amplitude above the unloaded level, toe off where it returns to it,
   interpolated linearly between samples.
5. **Sub-sample events, offset load** (raw FSR ADC with drifting baseline). The event is the onset of the loading (unloading)
   edge: walking back from the hysteresis crossing, heel strike is where the
   load's rate of rise falls below ``hs_slope_per_s`` (in amplitudes per
   second); toe off is where, after the crossing, the rate of fall first eases
   to ``to_slope_per_s``. The crossing of the rate threshold is interpolated
   linearly between samples. Slopes in amplitudes per second do not depend on
   the sampling rate, so 100 Hz and 300 Hz data use the same settings.

Everything is vectorised over samples; per-block work loops over blocks.
The core works on a span of a longer signal (absolute sample indices), which is
what lets :class:`processing.analytics.streaming.StreamingAnalyzer` reproduce
the batch result exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd

from insole_common.errors import ValidationError


@dataclass(frozen=True)
class _Params:
    block_n: int
    low_pct: float
    high_pct: float
    on_fraction: float
    off_fraction: float
    hs_slope_per_s: float
    to_slope_per_s: float
    min_stance_n: int
    min_swing_n: int
    max_gap_n: int
    search_n: int
    zero_based: bool
    min_relative_amplitude: float
    max_unloaded_fraction: float
    zero_level_fraction: float
    fs: float


class LoadEventDetector:
    """Heel strike / toe off from a 1-D load signal (any unit, any offset).

    Results after :meth:`detect`: ``events_`` (DataFrame with ``heel_strike_s``,
    ``toe_off_s``, and the integer hysteresis crossings ``on_i``/``off_i``),
    ``levels_`` (per-block unloaded / loaded levels).
    """

    def __init__(
        self,
        *,
        block_s: float = 5.0,
        low_pct: float = 5.0,
        high_pct: float = 97.0,
        on_fraction: float = 0.30,
        off_fraction: float = 0.10,
        hs_slope_per_s: float = 3.3,
        to_slope_per_s: float = 3.0,
        min_stance_ms: float = 150.0,
        min_swing_ms: float = 120.0,
        max_gap_ms: float = 50.0,
        search_ms: float = 400.0,
        zero_based: bool = False,
        min_relative_amplitude: float = 0.25,
        max_unloaded_fraction: float = 0.2,
        zero_level_fraction: float = 0.02,
    ) -> None:
        self.zero_level_fraction = zero_level_fraction
        self.block_s = block_s
        self.low_pct = low_pct
        self.high_pct = high_pct
        self.on_fraction = on_fraction
        self.off_fraction = off_fraction
        self.hs_slope_per_s = hs_slope_per_s
        self.to_slope_per_s = to_slope_per_s
        self.min_stance_ms = min_stance_ms
        self.min_swing_ms = min_swing_ms
        self.max_gap_ms = max_gap_ms
        self.search_ms = search_ms
        self.zero_based = zero_based
        self.min_relative_amplitude = min_relative_amplitude
        self.max_unloaded_fraction = max_unloaded_fraction

    def params(self, sampling_rate_hz: float) -> _Params:
        fs = float(sampling_rate_hz)
        if not (np.isfinite(fs) and fs > 0):
            raise ValidationError(f"sampling rate must be positive, got {sampling_rate_hz}", reason="bad_rate")
        if not 0 < self.off_fraction < self.on_fraction < 1:
            raise ValidationError("need 0 < off_fraction < on_fraction < 1", reason="bad_setting")
        return _Params(
            block_n=max(int(round(self.block_s * fs)), 8),
            low_pct=self.low_pct, high_pct=self.high_pct,
            on_fraction=self.on_fraction, off_fraction=self.off_fraction,
            hs_slope_per_s=self.hs_slope_per_s, to_slope_per_s=self.to_slope_per_s,
            min_stance_n=int(round(self.min_stance_ms / 1000 * fs)),
            min_swing_n=int(round(self.min_swing_ms / 1000 * fs)),
            max_gap_n=int(round(self.max_gap_ms / 1000 * fs)),
            search_n=max(int(round(self.search_ms / 1000 * fs)), 2),
            zero_based=self.zero_based,
            min_relative_amplitude=self.min_relative_amplitude,
            max_unloaded_fraction=self.max_unloaded_fraction,
            zero_level_fraction=self.zero_level_fraction,
            fs=fs,
        )

    def detect(self, data: np.ndarray, *, sampling_rate_hz: float, t0_s: float = 0.0) -> Self:
        p = self.params(sampling_rate_hz)
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 1:
            raise ValidationError(f"load must be 1-D, got shape {x.shape}", reason="bad_shape")
        span = SpanDetector(p)
        res = span.run(x, abs0=0, start=0, state0=np.nan, final=True)
        self.levels_ = span.block_table()
        ev = res.contacts
        self.events_ = pd.DataFrame({
            "heel_strike_s": t0_s + ev["hs_i"] / p.fs,
            "toe_off_s": t0_s + ev["to_i"] / p.fs,
            "on_i": ev["on_i"], "off_i": ev["off_i"], "ok": ev["ok"],
        })
        return self


@dataclass
class SpanResult:
    #: per contact (absolute indices): on_i, off_i (int; off_i = -1 while open), hs_i, to_i (float, sub-sample)
    contacts: dict[str, np.ndarray]
    #: absolute sample index up to which results are final
    horizon: int
    #: filled load (short gaps interpolated) for the buffer, and per-sample amplitude
    x: np.ndarray


def fill_short_gaps(x: np.ndarray, max_gap_n: int) -> np.ndarray:
    """Linearly interpolate NaN runs of at most ``max_gap_n`` samples between two valid samples."""
    nan = np.isnan(x)
    if not nan.any() or nan.all():
        return x
    y = x.copy()
    d = np.diff(np.r_[0, nan.view(np.int8), 0])
    starts, ends = np.where(d == 1)[0], np.where(d == -1)[0]
    keep = (ends - starts <= max_gap_n) & (starts > 0) & (ends < len(x))
    if keep.any():
        idx = np.concatenate([np.arange(s, e) for s, e in zip(starts[keep], ends[keep])])
        valid = np.where(~nan)[0]
        y[idx] = np.interp(idx, valid, x[valid])
    return y


class SpanDetector:
    """Contacts in a span of a (possibly still growing) load signal.

    Keeps the per-block levels it has computed (by absolute block number), so a
    streaming caller can feed the signal piecewise and get the batch answer.
    """

    def __init__(self, p: _Params) -> None:
        self.p = p
        self.lo: dict[int, float] = {}
        self.hi: dict[int, float] = {}
        self.amp_max: dict[int, float] = {}  # running max of amplitude up to and including block j

    def block_table(self) -> pd.DataFrame:
        j = sorted(self.lo)
        return pd.DataFrame({"block": j, "low": [self.lo[k] for k in j], "high": [self.hi[k] for k in j]})

    # -- levels ---------------------------------------------------------------------------------
    def _levels(self, x: np.ndarray, abs0: int, n_abs: int, final: bool) -> None:
        """Compute levels of every block whose window is complete (or all, when final)."""
        B = self.p.block_n
        n_blocks_total = -(-n_abs // B)
        last = n_blocks_total - 1 if final else self.last_final_block(n_abs)
        first = max(abs0 // B + 1, 0) if abs0 > 0 else 0
        for j in range(first, last + 1):
            if j in self.lo:
                continue
            a, b = max((j - 1) * B, 0), min((j + 2) * B, n_abs)
            if a < abs0:
                continue  # not enough context in this buffer; computed in an earlier pass
            w = x[a - abs0 : b - abs0]
            w = w[np.isfinite(w)]
            if w.size < B // 2:
                lo = hi = np.nan
            else:
                lo, hi = np.percentile(w, [self.p.low_pct, self.p.high_pct])
            self.lo[j], self.hi[j] = float(lo), float(hi)
            amp = hi - lo if np.isfinite(hi - lo) else 0.0
            prev = self.amp_max.get(j - 1, 0.0)
            self.amp_max[j] = max(prev, amp)

    def last_final_block(self, n_abs: int) -> int:
        """Last block whose level cannot change any more (its window, plus room for gap filling, has arrived)."""
        return (n_abs - self.p.max_gap_n - 1) // self.p.block_n - 2

    def _capable(self, j: int, last_final: int) -> bool:
        lo, hi = self.lo.get(j, np.nan), self.hi.get(j, np.nan)
        amp = hi - lo
        if not (np.isfinite(amp) and amp > 0):
            return False
        ref = self.amp_max.get(min(j + 1, last_final), self.amp_max.get(j, amp))
        if amp < self.p.min_relative_amplitude * ref:
            return False
        if self.p.zero_based and not (lo <= self.p.max_unloaded_fraction * hi and hi > 0):
            return False
        return True

    # -- contacts -------------------------------------------------------------------------------
    def run(self, x_raw: np.ndarray, *, abs0: int, start: int, state0: float, final: bool) -> SpanResult:
        """Detect contacts in ``x_raw`` (absolute samples ``abs0 ..``), state machine from absolute ``start``.

        ``state0`` is the contact state just before ``start`` (0 = swing, NaN = unknown).
        Returns contacts whose on-crossing is at or after ``start`` and before the horizon.
        """
        p = self.p
        B = p.block_n
        n = x_raw.size
        n_abs = abs0 + n
        x = fill_short_gaps(x_raw, p.max_gap_n)
        self._levels(x, abs0, n_abs, final)
        horizon = n_abs if final else max(self.last_final_block(n_abs) * B, 0)
        empty = {k: np.zeros(0, dtype=np.int64 if k.endswith("n_i") or k in ("on_i", "off_i") else float)
                 for k in ("on_i", "off_i", "hs_i", "to_i")}
        empty["ok"] = np.zeros(0, dtype=bool)
        if horizon <= start:
            return SpanResult(empty, horizon, x)
        # per-sample levels over the buffer part [lo_from, horizon)
        s0 = max(start - p.search_n, abs0)  # context for the backward heel-strike search
        blocks = np.arange(max(s0 // B - 1, 0), (horizon - 1) // B + 2)
        have = np.array([j in self.lo for j in blocks])
        blocks = blocks[have]
        if blocks.size == 0:
            return SpanResult(empty, horizon, x)
        centres = blocks * B + (B - 1) / 2.0
        lo_b = np.array([self.lo[j] for j in blocks])
        hi_b = np.array([self.hi[j] for j in blocks])
        last_final = max(self.lo)
        cap_b = np.array([self._capable(j, last_final) for j in blocks])
        ok_b = np.isfinite(lo_b) & np.isfinite(hi_b)
        idx_abs = np.arange(s0, horizon)
        lo_s = np.interp(idx_abs, centres[ok_b], lo_b[ok_b]) if ok_b.any() else np.full(idx_abs.size, np.nan)
        hi_s = np.interp(idx_abs, centres[ok_b], hi_b[ok_b]) if ok_b.any() else np.full(idx_abs.size, np.nan)
        amp_s = hi_s - lo_s
        blk = idx_abs // B
        cap_lookup = np.zeros(int(blk.max()) + 2 - int(blocks.min()), dtype=bool) if blk.size else np.zeros(0, bool)
        cap_lookup[blocks - blocks.min()] = cap_b
        bi = blk - blocks.min()
        cap_s = np.where((bi >= 0) & (bi < cap_lookup.size), cap_lookup[np.clip(bi, 0, cap_lookup.size - 1)], False)
        xs = x[s0 - abs0 : horizon - abs0]
        with np.errstate(invalid="ignore", divide="ignore"):
            v = (xs - lo_s) / amp_s
        # hysteresis state from `start`
        off_i0 = start - s0
        vv = v[off_i0:]
        st = np.full(vv.size + 1, np.nan)
        st[0] = state0
        st[1:][vv > p.on_fraction] = 1.0
        st[1:][vv < p.off_fraction] = 0.0
        st[1:][~cap_s[off_i0:]] = 0.0
        fill = np.where(np.isnan(st), 0, np.arange(st.size))
        np.maximum.accumulate(fill, out=fill)
        st = st[fill]
        prev, cur = st[:-1], st[1:]
        on = np.where((prev == 0) & (cur == 1))[0] + start  # absolute
        off = np.where((prev == 1) & (cur == 0))[0] + start
        if on.size == 0:
            return SpanResult(empty, horizon, x)
        # pair each on with the next off (open contact: off = -1)
        k = np.searchsorted(off, on, side="right")
        off_p = np.where(k < off.size, off[np.minimum(k, max(off.size - 1, 0))] if off.size else -1, -1)
        # several ons before one off cannot happen (state machine); keep unique
        # merge short swings
        gap = on[1:] - np.where(off_p[:-1] >= 0, off_p[:-1], horizon)
        short = (gap < p.min_swing_n) & (off_p[:-1] >= 0)
        keep_on = np.r_[True, ~short]
        keep_off = np.r_[~short, True]
        on_m, off_m = on[keep_on], off_p[keep_off]
        # a trailing off whose following swing may still be short is open unless final
        if not final and off_m.size and off_m[-1] >= 0 and horizon - off_m[-1] < p.min_swing_n:
            off_m = off_m.copy()
            off_m[-1] = -1
        dur = np.where(off_m >= 0, off_m, horizon) - on_m
        valid = dur >= p.min_stance_n
        if final:
            valid &= off_m >= 0
        on_m, off_m = on_m[valid], off_m[valid]
        if on_m.size == 0:
            return SpanResult(empty, horizon, x)
        # ---- sub-sample refinement on slopes (amplitudes per second) ----
        with np.errstate(invalid="ignore", divide="ignore"):
            dx = np.diff(xs) * p.fs / amp_s[:-1]  # dx[i] at relative time i + 0.5
        nd = dx.size
        ar = np.arange(nd)
        # heel strike: last i < on with dx[i] < thr, not before previous off / search window
        below = np.where(dx < p.hs_slope_per_s, ar, -1)
        np.maximum.accumulate(below, out=below)
        on_r = on_m - s0
        prev_off_r = np.r_[-1, np.where(off_m[:-1] >= 0, off_m[:-1] - s0, -1)]
        floor_r = np.maximum(on_r - p.search_n, prev_off_r)
        kk = below[np.clip(on_r - 1, 0, nd - 1)]
        ok = (kk >= floor_r) & (kk >= 0) & (kk + 1 < nd)
        kk = np.where(ok, kk, np.clip(on_r - 1, 0, nd - 2))
        d0, d1 = dx[kk], dx[kk + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.clip((p.hs_slope_per_s - d0) / (d1 - d0), 0.0, 1.0)
        frac = np.where(np.isfinite(frac), frac, 0.5)
        hs = np.where(ok, kk + 0.5 + frac, on_r - 0.5) + s0
        # toe off: first i >= off-1 with dx[i] > -thr, before the next on
        above = np.where(dx > -p.to_slope_per_s, ar, nd)
        nxt = np.minimum.accumulate(above[::-1])[::-1]
        off_r = np.where(off_m >= 0, off_m - s0, -1)
        has_off = off_r >= 0
        q = np.clip(off_r - 1, 0, nd - 1)
        k2 = nxt[q]
        next_on_r = np.r_[on_r[1:], horizon - s0]
        ok2 = has_off & (k2 < nd) & (k2 >= 1) & (k2 < np.minimum(next_on_r, off_r + p.search_n))
        k2c = np.clip(k2, 1, nd - 1)
        e0, e1 = dx[k2c - 1], dx[k2c]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac2 = np.clip((-p.to_slope_per_s - e0) / (e1 - e0), 0.0, 1.0)
        frac2 = np.where(np.isfinite(frac2), frac2, 0.5)
        to = np.where(ok2, k2c - 0.5 + frac2, np.where(has_off, off_r - 0.5, np.nan)) + s0
        # a contact is usable when the stride it starts (to the next on) has no long gap and lies in gait-capable data
        bad = np.isnan(xs) | ~cap_s
        cbad = np.r_[0, np.cumsum(bad)]
        seg_end = np.minimum(np.r_[on_r[1:], np.where(off_r[-1:] >= 0, off_r[-1:], horizon - s0)] + 1, xs.size)
        seg_start = np.maximum(on_r - 1, 0)
        ok_c = (cbad[seg_end] - cbad[seg_start]) == 0
        if p.zero_based:
            # a true zero exists: contact begins / ends where the load leaves / returns to a small
            # fraction of the amplitude above the unloaded level (sub-sample linear interpolation)
            lvl = lo_s + p.zero_level_fraction * amp_s
            under = np.where(xs < lvl, np.arange(xs.size), -1)
            np.maximum.accumulate(under, out=under)
            u = under[np.clip(on_r, 0, xs.size - 1)]
            okz = (u >= floor_r) & (u >= 0) & (u + 1 < xs.size)
            u = np.clip(u, 0, xs.size - 2)
            with np.errstate(invalid="ignore", divide="ignore"):
                fz = np.clip((lvl[u] - xs[u]) / (xs[u + 1] - xs[u]), 0.0, 1.0)
            hs = np.where(okz & np.isfinite(fz), u + fz + s0, hs)
            over = np.where(xs < lvl, np.arange(xs.size), xs.size)
            nxt2 = np.minimum.accumulate(over[::-1])[::-1]
            w = nxt2[np.clip(off_r, 0, xs.size - 1)]
            okw = has_off & (w < xs.size) & (w >= 1) & (w < next_on_r)
            w = np.clip(w, 1, xs.size - 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                fw = np.clip((xs[w - 1] - lvl[w - 1]) / ((xs[w - 1] - lvl[w - 1]) - (xs[w] - lvl[w])), 0.0, 1.0)
            to = np.where(okw & np.isfinite(fw), w - 1 + fw + s0, to)
        contacts = {"on_i": on_m.astype(np.int64), "off_i": off_m.astype(np.int64), "hs_i": hs, "to_i": to, "ok": ok_c}
        return SpanResult(contacts, horizon, x)
