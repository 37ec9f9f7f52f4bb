"""Low-latency provisional strides: an incremental per-foot heel-strike / toe-off detector.

The batch engine (:func:`processing.analytics.analyze`) takes its levels from centred 15-s
windows, so it needs about 11 s (two blocks plus one second) of data after a stride to fix it. This
detector trades that exactness for a bounded look-ahead, so that a running session's strides can be stored
and shown within a fraction of a second; the session's final analysis at close stays the
authoritative one (the service then replaces the provisional strides).

It follows the event definitions of :mod:`processing.analytics.events` with the same
settings (taken from a :class:`~processing.analytics.events.LoadEventDetector`):

1. **Levels** from the past only: the ``low_pct`` / ``high_pct`` percentiles of the last
   ``window_s`` of load (finite samples), recomputed every ``level_every_s``. A foot is
   gait-capable when its amplitude is at least ``min_relative_amplitude`` of the largest seen
   and, for zero-based loads, its unloaded level is below ``max_unloaded_fraction`` of the
   loaded one; elsewhere the foot counts as unloaded and no stride spans the stretch.
2. **Contacts by hysteresis** on the normalised load (above ``on_fraction`` = contact, below
   ``off_fraction`` = swing); swings shorter than ``min_swing_ms`` are merged, contacts shorter
   than ``min_stance_ms`` dropped.
3. **Sub-sample events**: heel strike is the last crossing of ``zero_level_fraction`` of the
   amplitude before the contact (searched back ``search_ms``, not before the previous toe
   off), toe off the first crossing of ``to_level_fraction`` after it, both interpolated
   linearly. For offset (raw ADC) loads the batch detector uses edge slopes instead; the
   provisional events use the level crossings for every unit.

Levels are recomputed every ``level_every_s`` of samples exactly, from the samples up to that point,
and apply to the samples after it (a chunk is split where they fall due), so the strides do not depend
on how the samples are chunked (``tests/test_analytics_online.py``).

A stride (heel strike to the next heel strike of the same foot) is reported as soon as the
next contact has lasted ``min_stance_ms``: about 0.2 s after its ending heel strike, the only
look-ahead. Missing samples (NaN) end the current stride; no stride spans them. Per chunk the
work is vectorised; Python runs once per change of the contact state (two per stride), never per
sample. Measured: ~13.5 us per 50-sample batch of simulated walking, load sum included (``LiveFeet.feed`` on
the ingest benchmark's batches in groups of 512; docs/benchmarks.md), and every stride within 20 ms of the
final analysis on simulated walks (``tests/test_analytics_online.py``).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from insole_common import metrics as C
from processing.analytics.events import LoadEventDetector
from processing.analytics.strides import MAX_STRIDE_S, MIN_STRIDE_S, MIN_SWING_S

_NONE = np.empty(0, dtype=np.intp)


#: One provisional stride; times in seconds on the caller's time base (``t0_s`` + sample / rate). Its fields are
#: the stride times of a strides table (``insole_common.metrics.STRIDE_TIME_COLS``), which are also the fields of the wire's
#: ``StrideRecord`` without its side (insole_common/messages.py; processing/service.py publishes it as one).
class OnlineStride(NamedTuple):
    """One provisional stride; times in seconds on the caller's time base (t0_s + sample / rate)."""

    #: the heel strike that starts the stride
    heel_strike_s: float
    #: the same foot's toe off (end of stance)
    toe_off_s: float
    #: the same foot's next heel strike (end of the stride)
    next_heel_strike_s: float
    #: next_heel_strike_s - heel_strike_s
    stride_time_s: float
    #: toe_off_s - heel_strike_s
    stance_time_s: float
    #: next_heel_strike_s - toe_off_s
    swing_time_s: float


assert list(OnlineStride._fields) == C.STRIDE_TIME_COLS  # (spelled out for the type checker; kept equal here)


class _Contact:
    __slots__ = ("clean", "confirmed", "hs", "off", "on", "to")

    def __init__(self, on: int, hs: float, clean: bool) -> None:
        self.on = on  # first sample above the on-threshold (absolute index)
        self.off: int | None = None  # first sample below the off-threshold after it
        self.hs = hs  # heel strike, sub-sample absolute index
        self.to = math.nan  # toe off, known once the following swing is over
        self.confirmed = False  # lasted min_stance: a real contact
        self.clean = clean  # no missing or non-gait sample since the previous contact's start


class OnlineStrideDetector:
    """Incremental heel strike / toe off of one foot; :meth:`feed` returns the strides each chunk completes.

    ``sampling_rate_hz`` and ``t0_s`` (the time of the first fed sample) fix the time base;
    ``zero_based`` says whether the load's zero means "unloaded" (newtons, kPa).
    ``detector`` supplies the event settings (default: ``LoadEventDetector()``, as the final analysis).
    """

    def __init__(self, *, sampling_rate_hz: float, t0_s: float = 0.0, zero_based: bool = True,
                 detector: LoadEventDetector | None = None, window_s: float = 10.0, min_window_s: float = 2.0,
                 level_every_s: float = 2.0) -> None:
        # the final analysis's settings in samples at this rate (LoadEventDetector.params checks the rate and the
        # thresholds), so both detectors count the same samples as a stance, a swing or the search window
        p = (detector or LoadEventDetector()).params(sampling_rate_hz)
        fs = p.fs
        self.fs = fs
        self.t0_s = float(t0_s)
        self.zero_based = zero_based
        self.low_pct, self.high_pct = p.low_pct, p.high_pct
        self.on_fraction, self.off_fraction = p.on_fraction, p.off_fraction
        self.hs_level_fraction = p.zero_level_fraction
        self.to_level_fraction = p.to_level_fraction
        self.min_relative_amplitude = p.min_relative_amplitude
        self.max_unloaded_fraction = p.max_unloaded_fraction
        self.min_stance_n = p.min_stance_n
        self.min_swing_n = p.min_swing_n
        self.search_n = p.search_n
        self.window_n = max(int(round(window_s * fs)), 8)
        self.min_window_n = max(int(round(min_window_s * fs)), 4)
        self.level_every_n = max(int(round(level_every_s * fs)), 1)
        # sample buffer: the level window plus room for the event searches
        self._cap = 4 * self.window_n
        self._buf = np.empty(self._cap)
        self._buf0 = 0  # absolute index of _buf[0]
        self._n = 0  # samples in _buf
        self.n_abs = 0  # samples fed so far
        self._next_levels = self.min_window_n
        self._lo = self._amp = math.nan
        self._amp_max = 0.0
        self._capable = False
        self._state = math.nan  # 1 contact, 0 swing, NaN unknown
        self._last_bad = -1  # absolute index of the latest missing or non-gait sample
        self._cur: _Contact | None = None  # the latest contact
        self._prev: _Contact | None = None  # the confirmed contact before it (its stride ends at _cur's heel strike)
        self.strides_n = 0

    # -- input ----------------------------------------------------------------------------------
    def feed(self, load: np.ndarray) -> list[OnlineStride]:
        """Add the next contiguous samples of the foot's load (NaN = missing); return the strides completed."""
        x = np.asarray(load, dtype=np.float64).reshape(-1)
        out: list[OnlineStride] = []
        k, n = 0, x.size
        while k < n:
            # pieces end where levels fall due, so that the result does not depend on how samples are chunked,
            # and hold at most window_n samples (the buffer holds a few windows)
            m = min(n - k, self.window_n, self._next_levels - self.n_abs)
            piece = x[k : k + m]
            self._append(piece)
            start = self.n_abs
            self.n_abs += m
            self._detect(piece, start, out)
            if self.n_abs >= self._next_levels:  # from the samples up to here, for the samples after them
                self._update_levels()
            k += m
        return out

    def _detect(self, x: np.ndarray, start: int, out: list) -> None:
        if not self._capable:
            # no gait here: the foot counts as unloaded and the stretch as unusable
            self._last_bad = self.n_abs - 1
            if self._state == 1:
                self._off(start)
            self._state = 0.0
            return
        on_lvl = self._lo + self.on_fraction * self._amp
        off_lvl = self._lo + self.off_fraction * self._amp
        lo_x, hi_x = x.min(), x.max()  # NaN if any sample is missing
        if self._state == 1 and lo_x >= off_lvl:
            pass  # stays in contact
        elif self._state == 0 and hi_x <= on_lvl:
            pass  # stays in swing
        else:
            self._scan(x, start, on_lvl, off_lvl, out, has_nan=math.isnan(lo_x))
        cur = self._cur
        if cur is not None and not cur.confirmed:
            end = cur.off if cur.off is not None else self.n_abs
            if end - cur.on >= self.min_stance_n:
                self._confirm(cur, out)

    def _scan(self, x: np.ndarray, start: int, on_lvl: float, off_lvl: float, out: list, *, has_nan: bool) -> None:
        """Hysteresis over the chunk, vectorised: only the decisive samples (above the on- or below the
        off-threshold) can change the state, and a Python call is made per change, not per sample."""
        # (``a.nonzero()[0]`` rather than ``np.flatnonzero``: the arrays are 1-D, and the wrapper costs more
        # than the search on chunks of a few hundred samples)
        nan = np.isnan(x).nonzero()[0] if has_nan else _NONE
        dec_i = ((x > on_lvl) | (x < off_lvl)).nonzero()[0]  # (NaN is neither: the state holds)
        if dec_i.size:
            dec = x[dec_i] > on_lvl  # True: contact
            prev = np.empty(dec.size)
            prev[0] = self._state
            prev[1:] = dec[:-1]
            change = dec != prev
            change[0] &= not math.isnan(self._state)  # unknown -> known is no transition
            for k in change.nonzero()[0].tolist():
                i = int(dec_i[k])
                if nan.size:  # missing samples before this change end the stride in progress
                    j = int(np.searchsorted(nan, i))
                    if j:
                        self._last_bad = max(self._last_bad, start + int(nan[j - 1]))
                if dec[k]:
                    self._on(start + i, out)
                else:
                    self._off(start + i)
            self._state = 1.0 if dec[-1] else 0.0
        if nan.size:
            self._last_bad = max(self._last_bad, start + int(nan[-1]))

    # -- contacts ---------------------------------------------------------------------------------
    def _on(self, i: int, out: list) -> None:
        cur = self._cur
        if cur is not None and cur.off is not None and i - cur.off < self.min_swing_n:
            cur.off = None  # a swing too short to be one: the contact goes on
            return
        floor = i - self.search_n
        # (a contact shorter than min_stance is dropped: the next stride starts at the confirmed one before it)
        if cur is not None and (cur.confirmed or (cur.off is not None and cur.off - cur.on >= self.min_stance_n)):
            if not cur.confirmed:
                self._confirm(cur, out)
            cur.to = self._toe_off(cur, i)
            self._prev = cur
        prev = self._prev
        if prev is not None and prev.off is not None:
            floor = max(floor, prev.off)
        clean = prev is not None and self._last_bad < prev.on - 1
        self._cur = _Contact(i, self._heel_strike(i, floor), clean)

    def _off(self, j: int) -> None:
        if self._cur is not None and self._cur.off is None:
            self._cur.off = j

    def _confirm(self, cur: _Contact, out: list) -> None:
        cur.confirmed = True
        prev = self._prev
        if prev is None or not cur.clean or prev.off is None:
            return
        hs, to, nhs = float(prev.hs), float(prev.to), float(cur.hs)  # (Python floats, not NumPy scalars: cheaper
        # to pickle, store and serialise downstream)
        fs = self.fs
        stride_t, stance_t, swing_t = (nhs - hs) / fs, (to - hs) / fs, (nhs - to) / fs
        if not (math.isfinite(to) and MIN_STRIDE_S <= stride_t <= MAX_STRIDE_S and stance_t > 0
                and swing_t >= MIN_SWING_S):
            return
        t0 = self.t0_s
        self.strides_n += 1
        out.append(OnlineStride(t0 + hs / fs, t0 + to / fs, t0 + nhs / fs, stride_t, stance_t, swing_t))

    # -- sub-sample events --------------------------------------------------------------------------
    def _heel_strike(self, i: int, floor: int) -> float:
        """Last crossing of the heel-strike level before sample ``i`` (not before ``floor``), interpolated."""
        lvl = self._lo + self.hs_level_fraction * self._amp
        a = max(floor, self._buf0)
        seg = self._buf[a - self._buf0 : i - self._buf0 + 1]
        below = (seg < lvl).nonzero()[0]
        if below.size == 0 or below[-1] + 1 >= seg.size:
            return i - 0.5
        u = int(below[-1])
        x0, x1 = seg[u], seg[u + 1]
        frac = (lvl - x0) / (x1 - x0) if x1 != x0 else 0.5
        return a + u + min(max(frac, 0.0), 1.0)

    def _toe_off(self, c: _Contact, next_on: int) -> float:
        """First crossing of the toe-off level at or after the contact's off-crossing, before ``next_on``."""
        if c.off is None or c.off < self._buf0 + 1:
            return math.nan
        lvl = self._lo + self.to_level_fraction * self._amp
        a = c.off - 1
        seg = self._buf[a - self._buf0 : next_on - self._buf0]
        under = (seg[1:] < lvl).nonzero()[0]
        if under.size == 0:
            return c.off - 0.5
        w = int(under[0]) + 1  # seg index of the first sample under the level (>= 1)
        x0, x1 = seg[w - 1] - lvl, seg[w] - lvl
        frac = x0 / (x0 - x1) if x0 != x1 else 0.5
        return a + w - 1 + min(max(frac, 0.0), 1.0)

    # -- levels and buffer --------------------------------------------------------------------------
    def _update_levels(self) -> None:
        self._next_levels = self.n_abs + self.level_every_n
        w = self._buf[max(self._n - self.window_n, 0) : self._n]
        if not math.isfinite(w.sum()):
            w = w[np.isfinite(w)]
        if w.size < self.min_window_n:
            self._capable = False
            return
        lo, hi = _percentiles(w, self.low_pct, self.high_pct)
        amp = hi - lo
        self._amp_max = max(self._amp_max, amp)
        self._lo, self._amp = float(lo), float(amp)
        self._capable = bool(amp > 0 and amp >= self.min_relative_amplitude * self._amp_max
                             and (not self.zero_based or lo <= self.max_unloaded_fraction * hi))

    def _append(self, x: np.ndarray) -> None:
        """Add at most ``window_n`` samples, dropping the oldest ones no search can still need."""
        n = x.size
        if self._n + n > self._cap:
            keep = self.window_n + self.search_n
            if self._cur is not None and self._cur.off is not None:  # its toe off is still to be found
                keep = max(keep, self._buf0 + self._n - self._cur.off + 2)
            keep = min(keep, self._n, self._cap - n)
            self._buf[:keep] = self._buf[self._n - keep : self._n]
            self._buf0 += self._n - keep
            self._n = keep
        self._buf[self._n : self._n + n] = x
        self._n += n


def _percentiles(w: np.ndarray, low_pct: float, high_pct: float) -> tuple[float, float]:
    """``np.percentile(w, [low_pct, high_pct])`` (linear) from one partial sort."""
    kth, (i0, j0, f0), (i1, j1, f1) = _ranks(w.size, low_pct, high_pct)
    a0, b0, a1, b1 = np.partition(w, kth)[[i0, j0, i1, j1]].tolist()
    return a0 + (b0 - a0) * f0, a1 + (b1 - a1) * f1


@functools.lru_cache(maxsize=64)
def _ranks(m: int, low_pct: float, high_pct: float) -> tuple:
    """For :func:`_percentiles` on ``m`` samples: the ranks to partition at, and per percentile the two ranks
    around it and the interpolation weight (the level windows are nearly always full: computed once)."""
    out = []
    for pct in (low_pct, high_pct):
        q = (m - 1) * pct / 100.0
        i = int(math.floor(q))
        out.append((i, min(i + 1, m - 1), q - i))
    kth = tuple(sorted({k for i, j, _f in out for k in (i, j)}))
    return kth, out[0], out[1]
