"""Compensatory-gait detection against each patient's own baseline (pure library, no I/O).

Input: one patient's daily metrics, a DataFrame indexed by day (sortable labels:
``YYYY-MM-DD`` strings, dates or integers) with the daily-summary columns of
:func:`processing.summaries.update_daily_summary` (``{metric}``, ``{metric}_L``,
``{metric}_R``) and ``strides_n``. Optionally a :class:`ReferencePeriod` set by a
therapist. Output (:class:`CompensationDetector`): the baseline of every monitored
series (``baselines_``) and the flag events (``flags_``).

Four kinds of compensation, each watched on one or more *series* (one metric, one
direction, one side when the daily table has per-side columns):

================  ==============================================  ==========
kind              series (first available)                        direction
================  ==============================================  ==========
lateral_shift     ``lateral_forefoot_load_fraction_{L,R}``;       up
                  else ``cop_ml_mean_fw_{L,R}``; else
                  ``lateral_load_fraction_{L,R}``
shortened_stride  ``stride_length_m`` measured (IMU); else from   down
                  the walk-ratio model (``walk_ratio``)
slowing           ``cadence_steps_per_min`` (when no stride       down
                  length can be had, and next to an IMU one;
                  stride time is evidence)
limp              symmetry index 200 (L - R) / (L + R) of         either way
                  ``stance_time_s`` and of ``peak_load`` (else
                  ``peak_heel_load``)
heel_offloading   ``heel_load_fraction_{L,R}`` (SD relative to    down
                  the patient's own level)
================  ==============================================  ==========

Every series but the stride / slowing one is compared with the baseline at the day's cadence
(:func:`processing.detection_speed.cadence_adjusted`).

The statistics (docs/detection.md has the reasoning and the measured error rates):

Settings: :class:`processing.detection_settings.DetectionSettings` (defaults = the validated values; a
deployment sets its own in ``KINETIC_DETECTION_CONFIG``). Records and flag state:
:mod:`processing.detection_records`.

* **Baseline** = the first ``baseline_days`` valid days (``strides_n >= min_strides_n``),
  or the valid days of the therapist's reference period. Mean and SD per series.
* **Day-to-day SD** is shrunk toward a typical free-living SD (``SD_PRIORS``, worth
  ``prior_weight_days`` days) and floored (``SD_FLOORS``), so a short or very quiet
  baseline does not make ordinary days look like change.
* A new day's deviation is standardised by the prediction SD
  ``sd * sqrt(1 + 1 / n_baseline)``; the **real-change threshold** is
  ``z_real_change`` (1.96) times that (a reliable-change index for one day).
* **Sustained**: a one-sided CUSUM of the standardised deviations (reference
  ``cusum_k``, decision limit ``cusum_h``, each day's contribution capped at
  ``z_clip`` so that one day can never raise a flag) plus at least
  ``min_days_beyond`` days beyond the real-change threshold since the CUSUM last
  left zero.
* **Improved**: the mean of the last ``return_days`` valid days is back within the
  real-change threshold for such a mean (``z_real_change * sd * sqrt(1/m + 1/n)``).
  **Cleared**: it stays back for ``clear_days`` consecutive valid days. A relapse
  (the CUSUM, restarted at *improved*, crosses again) raises the flag again.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from insole_common import metrics as C
from processing.analytics import symmetry_index  # the one formula (also importable from here)
from processing.analytics.walk_ratio import WalkRatio
from processing.detection_records import (  # noqa: F401  (the detector's records, importable from here)
    KINDS,
    STATES,
    Baseline,
    DetectionInputError,
    FlagEvent,
    FlagStatus,
    ReferencePeriod,
    flag_status,
)
from processing.detection_run import SERIES_COLS, Series, day_label, run_series
from processing.detection_settings import SD_FLOORS, SD_PRIORS, DetectionSettings  # noqa: F401
from processing.detection_speed import MEASURED, cadence_adjusted, slowing_series, stride_series

try:  # Python 3.11+
    from typing import Self
except ImportError:  # pragma: no cover
    from typing import Self

STRIDES_N = "strides_n"


def _compensation(metric: str) -> int:
    """The direction heel pain moves ``metric`` (the metric catalogue), +1 or -1."""
    direction = C.BY_KEY[metric].compensation
    if direction not in (C.UP, C.DOWN):
        raise ValueError(f"the catalogue claims no single direction for {metric!r}")
    return direction


class CompensationDetector:
    """Flags sustained compensatory gait against the patient's own baseline.

    ``CompensationDetector(settings, **overrides)``: a :class:`DetectionSettings` (default: the defaults)
    with any of its fields overridden by keyword. Call :meth:`detect` with one patient's daily metrics;
    results: ``baselines_`` (metric -> :class:`Baseline`), ``flags_`` (list of :class:`FlagEvent`, in day
    order), ``status_`` (the :class:`FlagStatus` of each of ``flags_``), ``active_`` (the raised events of
    flags still open, i.e. not cleared, at the last day), ``series_`` (long table day, metric, value, z,
    cusum per monitored series), ``skipped_`` (metric -> why it is not monitored) and ``baseline_complete_``.
    """

    def __init__(self, settings: DetectionSettings | None = None, **overrides: Any) -> None:
        settings = settings or DetectionSettings()
        self.settings = dataclasses.replace(settings, **overrides) if overrides else settings

    # ------------------------------------------------------------------------------------------
    def detect(self, daily: pd.DataFrame, *, reference: ReferencePeriod | None = None,
               walk_ratio: WalkRatio | None = None) -> Self:
        """Run over one patient's days; ``walk_ratio``: the patient's walk-ratio calibration (stride length
        without an IMU)."""
        s = self.settings
        s.check()
        table = self._prepare(daily)
        valid = table[STRIDES_N].to_numpy(dtype=float) >= s.min_strides_n
        days = table.index
        base_mask = self._baseline_mask(days, valid, reference)
        source = "auto" if reference is None else "therapist"
        set_by = None if reference is None else reference.set_by
        self.baseline_complete_ = bool(reference is not None or valid.sum() >= s.baseline_days)
        self.baselines_: dict[str, Baseline] = {}
        self.flags_: list[FlagEvent] = []
        self.status_: list[FlagStatus] = []
        self.active_: list[FlagEvent] = []
        self.skipped_: dict[str, str] = {}
        self.series_ = pd.DataFrame(columns=SERIES_COLS)
        if not self.baseline_complete_:
            return self
        monitor = valid & (np.arange(len(days)) > np.flatnonzero(base_mask)[-1])
        derived = self._derive(table)
        events: list[FlagEvent] = []
        frames = []
        for watched in self._series(derived, base_mask, walk_ratio):
            series, adjusted = cadence_adjusted(watched, derived, base_mask, s)
            values = derived
            if adjusted is not None:
                values = derived.copy()
                values[series.metric] = adjusted
            bases: list[Baseline] = []
            for metric, prior_key in [(series.metric, series.prior_key), *(p[:2] for p in series.partners)]:
                base = self._baseline(metric, prior_key, values[metric], base_mask, days, source, set_by)
                if base is None:
                    break
                bases.append(base)
            if len(bases) < 1 + len(series.partners):  # (a metric without a baseline)
                if bases:
                    self.skipped_[series.metric] = "a partner metric has no baseline"
                continue
            ev, frame = run_series(series, bases[0], bases[1:], values, monitor, days, base_mask, s)
            events.extend(ev)
            frames.append(frame)
        self.flags_ = sorted(events, key=lambda e: (e.day, KINDS.index(e.kind), e.metric))
        self.status_ = flag_status(self.flags_)
        self.active_ = [e for e, st in zip(self.flags_, self.status_, strict=True) if st.active]
        if frames:
            self.series_ = pd.concat(frames, ignore_index=True)
        return self

    def _baseline_mask(self, days: pd.Index, valid: np.ndarray, reference: ReferencePeriod | None) -> np.ndarray:
        """The baseline days: the therapist's valid reference days, else the first ``baseline_days`` valid days."""
        s = self.settings
        if reference is None:
            return valid & (np.cumsum(valid) <= s.baseline_days)
        try:
            in_ref = (days >= reference.start_day) & (days <= reference.end_day)
        except TypeError as exc:
            raise DetectionInputError(
                f"reference period {reference.start_day!r}..{reference.end_day!r} is not comparable with the "
                f"day labels ({days.dtype})", reason="bad_reference") from exc
        base_mask = np.asarray(in_ref) & valid
        if base_mask.sum() < s.min_baseline_days:
            raise DetectionInputError(
                f"reference period {reference.start_day}..{reference.end_day} has {int(base_mask.sum())} valid "
                f"walking days; at least {s.min_baseline_days} are needed", reason="short_reference")
        return base_mask

    @staticmethod
    def _prepare(daily: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(daily, pd.DataFrame):
            raise DetectionInputError(f"daily metrics must be a DataFrame, got {type(daily).__name__}")
        if STRIDES_N not in daily.columns:
            raise DetectionInputError(f"daily metrics need a {STRIDES_N!r} column (strides that day)")
        if daily.index.has_duplicates:
            dup = daily.index[daily.index.duplicated()][0]
            raise DetectionInputError(f"day {dup!r} appears more than once in the daily metrics")
        try:
            table = daily.sort_index()
        except TypeError as exc:
            raise DetectionInputError("day labels cannot be sorted (mixed types?)") from exc
        return table.apply(pd.to_numeric, errors="coerce").astype(float)

    @staticmethod
    def _derive(table: pd.DataFrame) -> pd.DataFrame:
        """The monitored quantities: the daily columns plus symmetry indices."""
        out = table.copy()
        for metric in (C.STANCE_TIME_S, C.PEAK_LOAD, C.PEAK_HEEL_LOAD):
            left, right = f"{metric}_L", f"{metric}_R"
            if left in table and right in table:
                out[f"si_{metric}"] = symmetry_index(table[left], table[right])
        return out

    def _usable(self, derived: pd.DataFrame, col: str, base_mask: np.ndarray) -> bool:
        return (col in derived
                and int(np.isfinite(derived[col].to_numpy()[base_mask]).sum()) >= self.settings.min_baseline_days)

    def _per_side(self, out: list[Series], derived, base_mask, kind: str, candidates: tuple[str, ...],
                  corroborating: tuple[str, ...] = ()) -> None:
        """The first of ``candidates`` usable per side (else both sides together), in its catalogue direction."""
        for metric in candidates:
            direction = _compensation(metric)
            sided = [f"{metric}_{s}" for s in ("L", "R")]
            if all(self._usable(derived, c, base_mask) for c in sided):
                for s, col in zip(("L", "R"), sided, strict=True):
                    corr = tuple(f"{c}_{s}" for c in corroborating if c != metric and f"{c}_{s}" in derived)
                    out.append(Series(kind, col, metric, direction, side=s, corroborating=corr))
                return
            if self._usable(derived, metric, base_mask):
                corr = tuple(c for c in corroborating if c != metric and c in derived)
                out.append(Series(kind, metric, metric, direction, corroborating=corr))
                return
        self.skipped_[kind] = f"none of {', '.join(candidates)} has {self.settings.min_baseline_days}+ baseline days"

    def _series(self, derived: pd.DataFrame, base_mask: np.ndarray, walk_ratio: WalkRatio | None) -> list[Series]:
        out: list[Series] = []
        lateral: tuple[str, ...] = (C.COP_ML_MEAN_FW, C.LATERAL_LOAD_FRACTION)
        if self.settings.lateral_forefoot_first:
            lateral = (C.LATERAL_FOREFOOT_LOAD_FRACTION, *lateral)
        self._per_side(out, derived, base_mask, "lateral_shift", lateral,
                       corroborating=(C.LATERAL_LOAD_FRACTION, C.COP_ML_MEAN_FW, C.LATERAL_FOREFOOT_LOAD_FRACTION))
        stride, why = stride_series(derived, lambda col: self._usable(derived, col, base_mask), walk_ratio)
        if stride is None:
            self.skipped_["shortened_stride"] = why
        else:
            out.append(stride)
            if (self.settings.slowing_with_imu and stride.extra.get("stride_length") == MEASURED
                    and self._usable(derived, C.CADENCE_STEPS_PER_MIN, base_mask)):
                out.append(slowing_series())  # measured stride length and cadence: two measurements of speed
        for metric in (C.STANCE_TIME_S, C.PEAK_LOAD, C.PEAK_HEEL_LOAD):
            col = f"si_{metric}"
            if metric == C.PEAK_HEEL_LOAD and any(s.metric == f"si_{C.PEAK_LOAD}" for s in out):
                continue  # peak_heel_load is only the stand-in for load when peak_load is not summarised
            if self._usable(derived, col, base_mask):
                # +1: the left value grows relative to the right (the right side is offloaded), -1: the reverse
                out.append(Series("limp", col, col, +1, side="R"))
                out.append(Series("limp", col, col, -1, side="L"))
            elif metric != C.PEAK_HEEL_LOAD:
                self.skipped_[col] = "no per-side values in the baseline"
        self._per_side(out, derived, base_mask, "heel_offloading", (C.HEEL_LOAD_FRACTION,),
                       corroborating=(C.REARFOOT_CONTACT_PCT,))
        return out

    def _baseline(self, metric, prior_key, values: pd.Series, base_mask, days, source, set_by) -> Baseline | None:
        s = self.settings
        v = values.to_numpy(dtype=float)
        sel = base_mask & np.isfinite(v)
        n = int(sel.sum())
        if n < s.min_baseline_days:
            self.skipped_[metric] = f"{n} baseline days with a value; {s.min_baseline_days} needed"
            return None
        x = v[sel]
        mean = float(x.mean())
        sd_sample = float(x.std(ddof=1)) if n > 1 else math.nan
        nu, nu0 = n - 1, s.prior_weight_days
        if prior_key in s.sd_priors_relative:  # a share of a small load: prior and floor scale with its level
            prior = s.sd_priors_relative[prior_key] * abs(mean)
            floor = s.sd_floors_relative.get(prior_key, 0.0) * abs(mean)
        else:
            floor = s.sd_floors.get(prior_key, 0.0)
            prior = s.sd_priors.get(prior_key, floor)
        var = (nu * (0.0 if math.isnan(sd_sample) else sd_sample) ** 2 + nu0 * prior ** 2) / max(nu + nu0, 1e-12)
        sd = max(math.sqrt(var), floor)
        if not sd > 0:
            self.skipped_[metric] = "zero day-to-day SD and no floor"
            return None
        idx = np.flatnonzero(sel)
        base = Baseline(metric=metric, mean=mean, sd=sd, days_n=n, start_day=day_label(days[idx[0]]),
                        end_day=day_label(days[idx[-1]]), source=source, sd_sample=sd_sample, set_by=set_by,
                        settings=s)
        self.baselines_[metric] = base
        return base


def detect(daily: pd.DataFrame, *, reference: ReferencePeriod | None = None, walk_ratio: WalkRatio | None = None,
           settings: DetectionSettings | None = None, **overrides: Any) -> CompensationDetector:
    """``CompensationDetector(settings, **overrides).detect(daily, reference=reference, walk_ratio=walk_ratio)``."""
    return CompensationDetector(settings, **overrides).detect(daily, reference=reference, walk_ratio=walk_ratio)
