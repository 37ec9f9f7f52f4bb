"""Initial contact (heel strike) and toe off per foot from the total load signal.

Method (docs/analytics.md):

1. **Local levels.** The recording is cut into blocks of ``block_s`` aligned to
   sample 0. For block *j* the unloaded / loaded levels are the ``low_pct`` /
   ``high_pct`` percentiles of blocks *j-1 .. j+1*; per-sample levels are linearly
   interpolated between block centres. This follows slow baseline drift (FSR
   sensors drift by more than half their range over minutes) and makes the
   detector indifferent to units and offsets. Samples in *flat* seconds (range
   below ``flat_fraction`` of the largest amplitude seen: a dead or
   disconnected sensor, e.g. als5.rit at the ADC floor for its last 132 s) are
   left out of the percentiles, and blocks made mostly of them are reported
   (``SpanDetector.flat``) so that the other foot may walk on alone.
   Percentiles are computed from partial sorts, vectorised over blocks.
2. **Gait-capable blocks.** A block can hold steps only if its amplitude is at
   least ``min_relative_amplitude`` of the largest amplitude seen so far (up to
   block *j+1*), and, for load signals whose zero means "unloaded" (newtons,
   kPa), if its unloaded level is below ``max_unloaded_fraction`` of its
   loaded level (standing never unloads a foot).
3. **Contacts by hysteresis.** A foot is in contact from the sample where the
   normalised load rises above ``on_fraction`` until it falls below
   ``off_fraction``. Swings shorter than ``min_swing_ms`` are merged (sensor
   noise), contacts shorter than ``min_stance_ms`` dropped. Offset loads
   only: a stretch of at least ``partial_swing_ms`` below ``on_fraction``
   that never reaches ``off_fraction`` is a swing too (a foot lifted while the
   FSR keeps part of its reading, seen around turns in gaitndd; a true-zero
   load that stays above ``off_fraction`` is a foot on the ground). When the
   data end during a contact that has lasted ``min_stance_ms``, its heel
   strike still ends the previous stride.
4. **Sub-sample events, zero-based load** (newtons, kPa: zero means unloaded).
   Heel strike is where the load leaves ``zero_level_fraction`` of the
   amplitude above the unloaded level, toe off where it returns to
   ``to_level_fraction`` (default: the same level), interpolated linearly
   between samples. The default 2 % of the loaded level is about 20 N for an
   adult (the usual force-plate contact threshold); ``OPENGO_EVENT_LEVELS``
   gives the later heel strike / earlier toe off of Moticon's gait report.
5. **Sub-sample events, offset load** (raw FSR ADC with drifting baseline).
   Heel strike is the onset of the loading edge: walking back from the
   hysteresis crossing, where the load's rate of rise falls below
   ``hs_slope_per_s`` (in amplitudes per second). Toe off mirrors the
   zero-based definition with the foot's own unloaded level: the unloading
   edge ends where, after the last sample at or above ``on_fraction``, the
   rate of fall first eases to ``to_slope_per_s`` or, if earlier, where the
   load first turns up again by ``to_rebound_fraction`` of the amplitude
   within ``rebound_ms`` (a rebound once the foot has left: gaitndd hunt3);
   toe off is the last time before that end at which the load was
   ``offset_to_level_fraction`` of the amplitude above the load there.
   Rates are differences over ``slope_span_ms`` (an odd
   number of sample intervals: 5 at 300 Hz, 1 at 100 Hz), which keeps a
   single noisy sample from ending the walk-back early; the crossing of the
   rate threshold is interpolated linearly between samples. Rates in
   amplitudes per second do not depend on the sampling rate, so 100 Hz and
   300 Hz data use the same settings.

Everything is vectorised over samples; per-block work is vectorised over blocks.
The core works on a span of a longer signal (absolute sample indices), with a
horizon up to which its results are final; ``FootEngine`` (pipeline.py) runs
it over a whole foot and then finishes it.
"""

from __future__ import annotations

import math
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
    to_level_fraction: float = 0.02
    slope_half_n: int = 0
    sec_n: int = 1
    sub_n: int = 1
    flat_fraction: float = 0.01
    partial_swing_n: int = 0
    to_rebound_fraction: float = 0.01
    rebound_n: int = 1
    offset_to_level_fraction: float = 0.03
    edge_search_n: int = 1


#: heel-strike / toe-off levels (fractions of the foot's loaded amplitude above its unloaded level) at which
#: Moticon's OpenGo gait report marks its events: the load at the vendor's marked samples of the three sample
#: walks has a median of 5.9 % (heel strike) and 11.6 % (toe off) of the amplitude (docs/validation.md).
#: ``LoadEventDetector(**OPENGO_EVENT_LEVELS)`` reports events at that definition instead of at contact.
OPENGO_EVENT_LEVELS = {"zero_level_fraction": 0.06, "to_level_fraction": 0.12}


class LoadEventDetector:
    """Heel strike / toe off from a 1-D load signal (any unit, any offset).

    Settings (see the module docstring for the method): ``zero_level_fraction`` /
    ``to_level_fraction`` are the heel-strike / toe-off levels of zero-based loads
    (fractions of the amplitude; ``to_level_fraction=None`` = the same level);
    ``hs_slope_per_s`` / ``to_slope_per_s`` the rate thresholds of offset (FSR)
    loads in amplitudes per second, measured over ``slope_span_ms``;
    ``to_rebound_fraction`` / ``rebound_ms`` the rise that ends an unloading edge
    early and ``offset_to_level_fraction`` the toe-off level above the load at the
    end of the unloading edge (offset loads); ``partial_swing_ms`` the time below
    ``on_fraction`` that makes a swing of offset loads without reaching
    ``off_fraction``; ``flat_fraction`` the range, as a fraction of the largest
    amplitude seen, below which a second of signal counts as flat (dead sensor).

    Results after :meth:`detect`: ``events_`` (DataFrame with ``heel_strike_s``,
    ``toe_off_s``, and the integer hysteresis crossings ``on_i``/``off_i``; a last
    contact still open when the data end has ``toe_off_s`` NaN and ``off_i`` -1),
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
        hs_slope_per_s: float = 2.5,
        to_slope_per_s: float = 0.5,
        min_stance_ms: float = 150.0,
        min_swing_ms: float = 60.0,
        max_gap_ms: float = 50.0,
        search_ms: float = 400.0,
        zero_based: bool = False,
        min_relative_amplitude: float = 0.25,
        max_unloaded_fraction: float = 0.2,
        zero_level_fraction: float = 0.02,
        to_level_fraction: float | None = None,
        slope_span_ms: float = 15.0,
        flat_fraction: float = 0.01,
        partial_swing_ms: float = 200.0,
        to_rebound_fraction: float = 0.01,
        rebound_ms: float = 30.0,
        offset_to_level_fraction: float = 0.03,
    ) -> None:
        self.partial_swing_ms = partial_swing_ms
        self.to_rebound_fraction = to_rebound_fraction
        self.rebound_ms = rebound_ms
        self.offset_to_level_fraction = offset_to_level_fraction
        self.flat_fraction = flat_fraction
        self.zero_level_fraction = zero_level_fraction
        self.to_level_fraction = to_level_fraction
        self.slope_span_ms = slope_span_ms
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
            to_level_fraction=self.zero_level_fraction if self.to_level_fraction is None else self.to_level_fraction,
            slope_half_n=max(int(round((self.slope_span_ms / 1000 * fs - 1) / 2)), 0),
            sec_n=max(int(round(fs)), 1),
            sub_n=math.gcd(max(int(round(self.block_s * fs)), 8), max(int(round(fs)) // 10, 1)),
            flat_fraction=self.flat_fraction,
            partial_swing_n=int(round(self.partial_swing_ms / 1000 * fs)),
            to_rebound_fraction=self.to_rebound_fraction,
            rebound_n=max(int(round(self.rebound_ms / 1000 * fs)), 1),
            offset_to_level_fraction=self.offset_to_level_fraction,
            edge_search_n=max(int(round(self.search_ms / 1000 * fs)), 2),
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


def _columns_reduce(op: np.ufunc, a: np.ndarray) -> np.ndarray:
    """``op.reduce(a, axis=1)`` for a short second axis, as a loop over its columns (much faster)."""
    out = a[:, 0].copy()
    for i in range(1, a.shape[1]):
        op(out, a[:, i], out=out)
    return out


def _sliding(op: np.ufunc, a: np.ndarray, k: int) -> np.ndarray:
    """``op`` over every window of ``k`` consecutive elements (length ``len(a) - k + 1``), k passes."""
    n = max(a.size - k + 1, 0)
    out = a[:n].copy()
    for i in range(1, k):
        op(out, a[i : i + n], out=out)
    return out


def _row_percentile(srt: np.ndarray, cnt: np.ndarray, pct: float) -> np.ndarray:
    """``np.percentile(..., method="linear")`` of the first ``cnt[r]`` values of each sorted row ``srt[r]``."""
    pos = (np.maximum(cnt, 1) - 1) * (pct / 100.0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, np.maximum(cnt - 1, 0))
    r = np.arange(srt.shape[0])
    v0, v1 = srt[r, i0], srt[r, i1]
    return v0 + (v1 - v0) * (pos - i0)


def _partial_swings(st: np.ndarray, v: np.ndarray, p: _Params, final: bool) -> None:
    """Set the hysteresis state ``st`` to swing over runs of at least ``partial_swing_n`` samples where the
    normalised load ``v`` stays below ``on_fraction`` without reaching ``off_fraction`` (in place). A run still
    open at the end of a non-final span is left alone (later data may lengthen it)."""
    low = v < p.on_fraction
    d = np.diff(np.r_[0, low.view(np.int8), 0])
    a, b = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    long_ = (b - a) >= p.partial_swing_n
    if not final:
        long_ &= b < v.size
    a, b = a[long_], b[long_]
    if a.size == 0:
        return
    lowest = np.fmin.reduceat(v, np.c_[a, np.minimum(b, v.size - 1)].ravel())[::2]
    lowest = np.where(b >= v.size, np.fmin(lowest, v[-1]), lowest)  # (reduceat stops one short at the end)
    for s_, e_ in zip(a[lowest >= p.off_fraction], b[lowest >= p.off_fraction]):  # runs (a few per minute)
        st[s_:e_] = 0.0


def _offset_toe_off(xs: np.ndarray, v: np.ndarray, amp_s: np.ndarray, to_r: np.ndarray, on_r: np.ndarray,
                    off_r: np.ndarray, next_on_r: np.ndarray, p: _Params) -> np.ndarray:
    """Toe off of offset loads (relative sub-sample indices): the unloading edge ends at ``to_r`` (rate eased)
    or at the first rebound after the last sample at or above ``on_fraction``, whichever is earlier; toe off
    is the last time before that end at which the load was ``offset_to_level_fraction`` amplitudes above its
    level at the end. A rebound must rise before the next contact (``next_on_r``), so only samples before it
    are read. Vectorised over samples and contacts."""
    n = xs.size
    has_off = (off_r >= 0) & np.isfinite(to_r)
    if not has_off.any():
        return to_r
    last_on = np.arange(n)
    last_on[~(v >= p.on_fraction)] = -1
    np.maximum.accumulate(last_on, out=last_on)
    q = np.clip(np.maximum(last_on[np.clip(off_r - 1, 0, n - 1)], on_r), 1, n - 1)
    del last_on
    # rebound: in each contact's window [q, end of edge), the first sample not above its predecessor whose next
    # `rebound_n` samples rise by >= the fraction (and lie before the next contact); per-contact windows (short)
    W = p.rebound_n
    lim = np.minimum(np.ceil(np.where(has_off, to_r, q)), next_on_r - W).astype(np.int64)  # exclusive
    span = np.clip(lim - q, 0, 2 * p.search_n)
    end = to_r
    L = int(span.max()) if span.size else 0
    if L > 0:
        cols = np.arange(L + W)
        idx = np.minimum(q[:, None] + cols[None, :], n - 1)
        X = xs[idx]
        ahead = X[:, 1 : L + 1].copy()  # max of the next W samples
        for i in range(2, W + 1):
            np.fmax(ahead, X[:, i : L + i], out=ahead)
        cur, ic = X[:, :L], idx[:, :L]
        with np.errstate(invalid="ignore"):
            flag = ahead - cur >= p.to_rebound_fraction * amp_s[ic]
            flag &= v[ic] < p.on_fraction
            flag &= cur <= xs[ic - 1]
        flag &= cols[None, :L] < span[:, None]
        hit = flag.any(axis=1)
        kn = q + np.argmax(flag, axis=1)
        end = np.where(has_off & hit & (kn < to_r), kn, to_r)
    # toe off: last crossing, before the end, of the level `offset_to_level_fraction` above the load at the end
    fin = has_off
    e = np.where(fin, end, 0.0)
    i0 = np.clip(np.floor(e).astype(np.int64), 0, n - 2)
    f0 = e - i0
    lvl = xs[i0] + (xs[i0 + 1] - xs[i0]) * f0 + p.offset_to_level_fraction * amp_s[i0]
    idx = np.clip(i0[:, None] - np.arange(p.edge_search_n)[None, :], 0, n - 1)  # samples at / before the end
    above = xs[idx] >= lvl[:, None]
    found = above.any(axis=1)
    k = np.argmax(above, axis=1)
    j = idx[np.arange(idx.shape[0]), k]  # last sample at or above the level
    j1 = np.minimum(j + 1, n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fr = (xs[j] - lvl) / (xs[j] - xs[j1])
    fr = np.clip(np.where(np.isfinite(fr), fr, 0.5), 0.0, 1.0)
    t = np.minimum(j + fr, e)
    return np.where(fin & found, t, np.where(fin, end, to_r))


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
        self.flat: dict[int, float] = {}  # share of block j's finite samples that lie in flat (dead-sensor) seconds
        self.rr_max: dict[int, float] = {}  # running max of the raw window range (reference of the flat test)

    def block_table(self) -> pd.DataFrame:
        j = sorted(self.lo)
        return pd.DataFrame({"block": j, "low": [self.lo[k] for k in j], "high": [self.hi[k] for k in j]})

    # -- levels ---------------------------------------------------------------------------------
    def _levels(self, x: np.ndarray, abs0: int, n_abs: int, final: bool) -> None:
        """Compute levels of every block whose window is complete (or all, when final); vectorised over blocks."""
        p = self.p
        B = p.block_n
        n_blocks_total = -(-n_abs // B)
        last = n_blocks_total - 1 if final else self.last_final_block(n_abs)
        first = max(abs0 // B + 1, 0) if abs0 > 0 else 0
        # a block's window [(j-1)B, (j+2)B) needs one more second before it for the flat test
        todo = np.array([j for j in range(first, last + 1)
                         if j not in self.lo and not ((j - 1) * B > 0 and (j - 1) * B - p.sec_n < abs0)], dtype=np.int64)
        if todo.size == 0:
            return
        n = x.size
        q = p.sub_n  # divides B, and abs0 is a multiple of B: sub-blocks are aligned to absolute sample 0
        K = max(p.sec_n // q, 1)
        nb = -(-n // B)  # blocks in the buffer
        # buffer laid out as blocks, with one NaN block before and two after (window edges)
        ext = np.full((nb + 3) * B, np.nan)
        ext[B : B + n] = x
        E = ext.reshape(nb + 3, B)
        # ---- flat seconds: range of every whole second, in steps of q samples ----
        sub = ext.reshape(-1, q)
        smx, smn = _columns_reduce(np.fmax, sub), _columns_reduce(np.fmin, sub)  # NaN only if all are
        sfin = np.isfinite(smx)
        smx, smn = np.where(sfin, smx, -np.inf), np.where(sfin, smn, np.inf)
        wr = _sliding(np.maximum, smx, K) - _sliding(np.minimum, smn, K)  # range of the second from sub-block k
        wr[_sliding(np.minimum, sfin.view(np.uint8), K) == 0] = np.inf  # (a second with a missing sub-block)
        pw = np.r_[np.full(K - 1, np.inf), wr, np.full(K - 1, np.inf)]
        rmin = _sliding(np.minimum, pw, K)[: sub.shape[0]].reshape(nb + 3, B // q)  # least range of a second around
        # ---- per window [(j-1)B, (j+2)B): raw range, flat mask, robust levels without flat / missing samples ----
        W = 3 * B
        r = todo - abs0 // B + 1  # row of block j in E
        bmx, bmn = smx.reshape(nb + 3, B // q).max(axis=1), smn.reshape(nb + 3, B // q).min(axis=1)
        raw_range = np.maximum(np.maximum(bmx[r - 1], bmx[r]), bmx[r + 1]) - np.minimum(np.minimum(bmn[r - 1], bmn[r]),
                                                                                        bmn[r + 1])
        raw_range = np.where(np.isfinite(raw_range), raw_range, 0.0)
        ref = np.maximum.accumulate(np.r_[self.rr_max.get(int(todo[0]) - 1, 0.0), raw_range])[1:]
        thr = p.flat_fraction * ref
        # flat and finite bookkeeping per sub-block (q samples), per window of 3 * B / q sub-blocks
        sub_fin = np.isfinite(sub).astype(np.float64) @ np.ones(q)  # finite samples per sub-block
        sfc = sub_fin.reshape(nb + 3, B // q)
        rw = np.concatenate([rmin[r - 1], rmin[r], rmin[r + 1]], axis=1)
        fw = rw <= thr[:, None]  # flat sub-blocks of each window
        fc = np.concatenate([sfc[r - 1], sfc[r], sfc[r + 1]], axis=1)
        nsb = B // q
        own_fin = fc[:, nsb : 2 * nsb].sum(axis=1)
        flat_share = np.where(own_fin > 0, (fc * fw)[:, nsb : 2 * nsb].sum(axis=1) / np.maximum(own_fin, 1), 0.0)
        cnt = (fc * ~fw).sum(axis=1).astype(np.int64)  # usable samples per window
        lo, hi = np.empty(todo.size), np.empty(todo.size)
        full = cnt == W
        if full.any():
            lo[full], hi[full] = self._full_window_levels(E, r[full], W)
        if (~full).any():  # windows with missing or flat samples (few): full sort without them
            rr = r[~full]
            win = np.concatenate([E[rr - 1], E[rr], E[rr + 1]], axis=1)
            win[np.repeat(fw[~full], q, axis=1)] = np.nan
            srt = np.sort(win, axis=1)  # NaN last
            lo[~full] = _row_percentile(srt, cnt[~full], p.low_pct)
            hi[~full] = _row_percentile(srt, cnt[~full], p.high_pct)
        few = cnt < B // 2
        lo[few] = np.nan
        hi[few] = np.nan
        amp = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
        amax = np.maximum.accumulate(np.r_[self.amp_max.get(int(todo[0]) - 1, 0.0), amp])[1:]
        for k, j in enumerate(todo.tolist()):  # bookkeeping per block (a few hundred per hour)
            self.lo[j], self.hi[j] = float(lo[k]), float(hi[k])
            self.amp_max[j] = float(amax[k])
            self.rr_max[j] = float(ref[k])
            self.flat[j] = float(flat_share[k])

    def _full_window_levels(self, E: np.ndarray, r: np.ndarray, W: int) -> tuple[np.ndarray, np.ndarray]:
        """Low / high percentiles of windows of three complete blocks (rows r-1, r, r+1 of ``E``), exactly as
        ``np.percentile`` but from partial sorts: a window's k-th smallest value is among the k smallest of each
        of its blocks, so each block is partitioned once and only those candidates are merged per window."""
        p = self.p
        B = E.shape[1]
        blocks = np.unique(np.r_[r - 1, r, r + 1])
        pos_lo, pos_hi = (W - 1) * p.low_pct / 100.0, (W - 1) * p.high_pct / 100.0
        i_lo, i_hi = int(np.floor(pos_lo)), int(np.floor(pos_hi))
        k_lo = min(i_lo + 2, B)  # ranks i_lo, i_lo + 1 from the bottom
        k_hi = min(W - i_hi, B)  # ranks i_hi, i_hi + 1 counted from the top
        part = np.partition(E[blocks], sorted({k_lo - 1, B - k_hi}), axis=1)
        small = np.full((E.shape[0], k_lo), np.nan)
        large = np.full((E.shape[0], k_hi), np.nan)
        small[blocks], large[blocks] = part[:, :k_lo], part[:, B - k_hi :]
        cand_lo = np.concatenate([small[r - 1], small[r], small[r + 1]], axis=1)
        cand_hi = np.concatenate([large[r - 1], large[r], large[r + 1]], axis=1)
        off = W - cand_hi.shape[1]  # window rank of cand_hi's smallest element
        lo_k = sorted({i_lo, min(i_lo + 1, W - 1)})
        hi_k = sorted({i_hi - off, min(i_hi + 1, W - 1) - off})
        a = np.partition(cand_lo, lo_k, axis=1)
        b = np.partition(cand_hi, hi_k, axis=1)
        lo = a[:, i_lo] + (a[:, min(i_lo + 1, W - 1)] - a[:, i_lo]) * (pos_lo - i_lo)
        hi = b[:, i_hi - off] + (b[:, min(i_hi + 1, W - 1) - off] - b[:, i_hi - off]) * (pos_hi - i_hi)
        return lo, hi

    def last_final_block(self, n_abs: int) -> int:
        """Last block whose level cannot change any more (its window, one second for the flat test and room
        for gap filling have arrived)."""
        return (n_abs - self.p.max_gap_n - self.p.sec_n - 1) // self.p.block_n - 2

    def _capable_blocks(self, lo: np.ndarray, hi: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`_capable` for blocks with levels ``lo``/``hi`` and reference amplitude ``ref``."""
        amp = hi - lo
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(amp) & (amp > 0)
            ref = np.where(np.isfinite(ref), ref, amp)
            ok &= ~(amp < self.p.min_relative_amplitude * ref)
            if self.p.zero_based:
                ok &= (lo <= self.p.max_unloaded_fraction * hi) & (hi > 0)
        return ok

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
        ref_b = np.array([self.amp_max.get(min(j + 1, last_final), self.amp_max.get(j, np.nan)) for j in blocks.tolist()])
        cap_b = self._capable_blocks(lo_b, hi_b, ref_b)
        ok_b = np.isfinite(lo_b) & np.isfinite(hi_b)
        # (the full-length temporaries below are deleted as soon as they are used: a lower peak keeps the
        # allocator from mapping and page-faulting fresh memory on every call)
        pos_f = np.arange(s0, horizon, dtype=np.float64)
        if ok_b.any():
            lo_s = np.interp(pos_f, centres[ok_b], lo_b[ok_b])
            amp_s = np.interp(pos_f, centres[ok_b], hi_b[ok_b])
            amp_s -= lo_s
        else:
            lo_s, amp_s = np.full(pos_f.size, np.nan), np.full(pos_f.size, np.nan)
        del pos_f
        # gait-capable flag per sample, from the per-block flags
        b0 = s0 // B
        cap_blk = np.zeros((horizon - 1) // B - b0 + 1, dtype=bool)
        sel = (blocks >= b0) & (blocks - b0 < cap_blk.size)
        cap_blk[blocks[sel] - b0] = cap_b[sel]
        cap_s = np.repeat(cap_blk, B)[s0 - b0 * B : horizon - b0 * B]
        xs = x[s0 - abs0 : horizon - abs0]
        v = xs - lo_s
        with np.errstate(invalid="ignore", divide="ignore"):
            v /= amp_s
        # hysteresis state from `start`: forward-fill the last threshold crossing
        off_i0 = start - s0
        vv = v[off_i0:]
        st = np.full(vv.size + 1, np.nan)
        st[0] = state0
        st[1:][vv > p.on_fraction] = 1.0
        st[1:][vv < p.off_fraction] = 0.0
        st[1:][~cap_s[off_i0:]] = 0.0
        if not p.zero_based and p.partial_swing_n > 0:
            _partial_swings(st[1:], vv, p, final)
        del vv
        fill = np.arange(st.size)
        fill[np.isnan(st)] = 0
        np.maximum.accumulate(fill, out=fill)
        st = st[fill]
        del fill
        prev, cur = st[:-1], st[1:]
        on = np.flatnonzero((prev == 0) & (cur == 1)) + start  # absolute
        off = np.flatnonzero((prev == 1) & (cur == 0)) + start
        del st, prev, cur
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
            # a contact still open when the data end starts no stride (no toe off), but its heel strike
            # ends the previous one (gaitndd records stop mid-walk at 300 s)
            valid[:-1] &= off_m[:-1] >= 0
        on_m, off_m = on_m[valid], off_m[valid]
        if on_m.size == 0:
            return SpanResult(empty, horizon, x)
        # ---- sub-sample refinement on slopes (amplitudes per second) ----
        nd = xs.size - 1
        h = p.slope_half_n
        dx = np.full(nd, np.nan)  # dx[i]: rate over samples i-h .. i+1+h, at relative time i + 0.5
        if nd > 2 * h:
            np.subtract(xs[1 + 2 * h :], xs[: xs.size - 1 - 2 * h], out=dx[h : nd - h])
            if h:  # the first / last h rates use the one-sample difference
                dx[:h] = xs[1 : h + 1] - xs[:h]
                dx[nd - h :] = xs[nd - h + 1 :] - xs[nd - h : nd]
                dx[h : nd - h] /= 2 * h + 1
        dx *= p.fs
        with np.errstate(invalid="ignore", divide="ignore"):
            dx /= amp_s[:-1]
        # heel strike: last i < on with dx[i] < thr, not before previous off / search window
        below = np.arange(nd)
        below[~(dx < p.hs_slope_per_s)] = -1
        np.maximum.accumulate(below, out=below)
        on_r = on_m - s0
        prev_off_r = np.r_[-1, np.where(off_m[:-1] >= 0, off_m[:-1] - s0, -1)]
        floor_r = np.maximum(on_r - p.search_n, prev_off_r)
        v_off = None if p.zero_based else v  # (offset loads need it for the toe off)
        del v
        kk = below[np.clip(on_r - 1, 0, nd - 1)]
        del below
        ok = (kk >= floor_r) & (kk >= 0) & (kk + 1 < nd)
        kk = np.where(ok, kk, np.clip(on_r - 1, 0, nd - 2))
        d0, d1 = dx[kk], dx[kk + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.clip((p.hs_slope_per_s - d0) / (d1 - d0), 0.0, 1.0)
        frac = np.where(np.isfinite(frac), frac, 0.5)
        hs = np.where(ok, kk + 0.5 + frac, on_r - 0.5) + s0
        # toe off: first i >= off-1 with dx[i] > -thr, before the next on
        nxt = np.arange(nd)
        nxt[~(dx > -p.to_slope_per_s)] = nd
        nxt = nxt[::-1]
        np.minimum.accumulate(nxt, out=nxt)
        nxt = nxt[::-1]
        off_r = np.where(off_m >= 0, off_m - s0, -1)
        has_off = off_r >= 0
        q = np.clip(off_r - 1, 0, nd - 1)
        k2 = nxt[q]
        del nxt
        next_on_r = np.r_[on_r[1:], horizon - s0]
        ok2 = has_off & (k2 < nd) & (k2 >= 1) & (k2 < np.minimum(next_on_r, off_r + p.search_n))
        k2c = np.clip(k2, 1, nd - 1)
        e0, e1 = dx[k2c - 1], dx[k2c]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac2 = np.clip((-p.to_slope_per_s - e0) / (e1 - e0), 0.0, 1.0)
        frac2 = np.where(np.isfinite(frac2), frac2, 0.5)
        to = np.where(ok2, k2c - 0.5 + frac2, np.where(has_off, off_r - 0.5, np.nan)) + s0
        if not p.zero_based:
            to = _offset_toe_off(xs, v_off, amp_s, to - s0, on_r, off_r, next_on_r, p) + s0
        del v_off
        # a contact is usable when the stride it starts (to the next on) has no long gap and lies in gait-capable data
        bad = np.isnan(xs)
        bad |= ~cap_s
        cbad = np.zeros(bad.size + 1, dtype=np.int64)
        np.cumsum(bad, out=cbad[1:])
        del bad
        seg_end = np.minimum(np.r_[on_r[1:], np.where(off_r[-1:] >= 0, off_r[-1:], horizon - s0)] + 1, xs.size)
        seg_start = np.maximum(on_r - 1, 0)
        ok_c = (cbad[seg_end] - cbad[seg_start]) == 0
        if p.zero_based:
            # a true zero exists: contact begins / ends where the load leaves / returns to a small
            # fraction of the amplitude above the unloaded level (sub-sample linear interpolation)
            lvl = lo_s + p.zero_level_fraction * amp_s
            under = np.arange(xs.size)
            under[~(xs < lvl)] = -1
            np.maximum.accumulate(under, out=under)
            u = under[np.clip(on_r, 0, xs.size - 1)]
            del under
            okz = (u >= floor_r) & (u >= 0) & (u + 1 < xs.size)
            u = np.clip(u, 0, xs.size - 2)
            with np.errstate(invalid="ignore", divide="ignore"):
                fz = np.clip((lvl[u] - xs[u]) / (xs[u + 1] - xs[u]), 0.0, 1.0)
            hs = np.where(okz & np.isfinite(fz), u + fz + s0, hs)
            if p.to_level_fraction != p.zero_level_fraction:
                lvl = lo_s + p.to_level_fraction * amp_s
            nxt2 = np.arange(xs.size)
            nxt2[~(xs < lvl)] = xs.size
            nxt2 = nxt2[::-1]
            np.minimum.accumulate(nxt2, out=nxt2)
            nxt2 = nxt2[::-1]
            w = nxt2[np.clip(off_r, 0, xs.size - 1)]
            del nxt2
            okw = has_off & (w < xs.size) & (w >= 1) & (w < next_on_r)
            w = np.clip(w, 1, xs.size - 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                fw = np.clip((xs[w - 1] - lvl[w - 1]) / ((xs[w - 1] - lvl[w - 1]) - (xs[w] - lvl[w])), 0.0, 1.0)
            to = np.where(okw & np.isfinite(fw), w - 1 + fw + s0, to)
        contacts = {"on_i": on_m.astype(np.int64), "off_i": off_m.astype(np.int64), "hs_i": hs, "to_i": to, "ok": ok_c}
        return SpanResult(contacts, horizon, x)
