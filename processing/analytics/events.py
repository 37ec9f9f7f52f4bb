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
Code: levels.py (steps 1-2), contacts.py (3), heel_strike.py and toe_off.py
(4-5), all run by span.py's ``SpanDetector`` on a span of a longer signal
(absolute sample indices, with a horizon up to which its results are final);
``FootEngine`` (pipeline.py) runs it over a whole foot and then finishes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self, TypedDict

import numpy as np
import pandas as pd

from insole_common.errors import ValidationError
from processing.analytics.event_params import EventParams
from processing.analytics.span import SpanDetector, SpanResult, fill_short_gaps

__all__ = ["OPENGO_EVENT_LEVELS", "EventParams", "LoadEventDetector", "SpanDetector", "SpanResult", "fill_short_gaps"]


#: heel-strike / toe-off levels (fractions of the foot's loaded amplitude above its unloaded level) at which
#: Moticon's OpenGo gait report marks its events: the load at the vendor's marked samples of the three sample
#: walks has a median of 5.9 % (heel strike) and 11.6 % (toe off) of the amplitude (docs/validation.md).
#: ``LoadEventDetector(**OPENGO_EVENT_LEVELS)`` reports events at that definition instead of at contact.
class EventLevels(TypedDict):
    """Heel-strike and toe-off levels of :class:`LoadEventDetector` (fractions of the loaded amplitude)."""

    zero_level_fraction: float
    to_level_fraction: float


OPENGO_EVENT_LEVELS: EventLevels = {"zero_level_fraction": 0.06, "to_level_fraction": 0.12}


@dataclass(kw_only=True, eq=False)
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

    block_s: float = 5.0
    low_pct: float = 5.0
    high_pct: float = 97.0
    on_fraction: float = 0.30
    off_fraction: float = 0.10
    hs_slope_per_s: float = 2.5
    to_slope_per_s: float = 0.5
    min_stance_ms: float = 150.0
    min_swing_ms: float = 60.0
    max_gap_ms: float = 50.0
    search_ms: float = 400.0
    zero_based: bool = False
    min_relative_amplitude: float = 0.25
    max_unloaded_fraction: float = 0.2
    zero_level_fraction: float = 0.02
    to_level_fraction: float | None = None
    slope_span_ms: float = 15.0
    flat_fraction: float = 0.01
    partial_swing_ms: float = 200.0
    to_rebound_fraction: float = 0.01
    rebound_ms: float = 30.0
    offset_to_level_fraction: float = 0.03

    def params(self, sampling_rate_hz: float) -> EventParams:
        fs = float(sampling_rate_hz)
        if not (np.isfinite(fs) and fs > 0):
            raise ValidationError(f"sampling rate must be positive, got {sampling_rate_hz}", reason="bad_rate")
        if not 0 < self.off_fraction < self.on_fraction < 1:
            raise ValidationError("need 0 < off_fraction < on_fraction < 1", reason="bad_setting")
        return EventParams(
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
        self.levels_ = span.levels.block_table()
        ev = res.contacts
        self.events_ = pd.DataFrame({
            "heel_strike_s": t0_s + ev["hs_i"] / p.fs,
            "toe_off_s": t0_s + ev["to_i"] / p.fs,
            "on_i": ev["on_i"], "off_i": ev["off_i"], "ok": ev["ok"],
        })
        return self
