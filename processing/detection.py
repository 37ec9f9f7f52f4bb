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
lateral_shift     ``cop_ml_mean_fw_{L,R}``; else                  up
                  ``lateral_load_fraction_{L,R}``
shortened_stride  ``stride_length_m``; else ``cadence_steps_per_  down; up AND down
                  min`` up AND ``stride_time_s`` down
limp              symmetry index 200 (L - R) / (L + R) of         either way
                  ``stance_time_s`` and of ``peak_load`` (else
                  ``peak_heel_load``)
heel_offloading   ``heel_load_fraction_{L,R}``                    down
================  ==============================================  ==========

The statistics (docs/detection.md has the reasoning and the measured error rates):

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

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from insole_common.errors import ValidationError
from insole_common import metrics as C

try:  # Python 3.11+
    from typing import Self
except ImportError:  # pragma: no cover
    from typing_extensions import Self

KINDS = ("lateral_shift", "shortened_stride", "limp", "heel_offloading")
STATES = ("raised", "cleared", "improved")
STRIDES_N = "strides_n"

#: typical day-to-day SD of one day's median in free-living walking (the shrinkage target);
#: symmetry indices (``si_...``) are in percentage points
SD_PRIORS: dict[str, float] = {
    C.STRIDE_LENGTH_M: 0.04,
    C.CADENCE_STEPS_PER_MIN: 2.5,
    C.STRIDE_TIME_S: 0.025,
    C.COP_ML_MEAN_FW: 0.012,
    C.LATERAL_LOAD_FRACTION: 0.02,
    C.HEEL_LOAD_FRACTION: 0.012,
    "si_" + C.STANCE_TIME_S: 1.5,
    "si_" + C.PEAK_LOAD: 2.5,
    "si_" + C.PEAK_HEEL_LOAD: 3.0,
}
#: the day-to-day SD used is never below this (measurement resolution / smallest meaningful change)
SD_FLOORS: dict[str, float] = {
    C.STRIDE_LENGTH_M: 0.015,
    C.CADENCE_STEPS_PER_MIN: 1.0,
    C.STRIDE_TIME_S: 0.01,
    C.COP_ML_MEAN_FW: 0.005,
    C.LATERAL_LOAD_FRACTION: 0.008,
    C.HEEL_LOAD_FRACTION: 0.005,
    "si_" + C.STANCE_TIME_S: 0.75,
    "si_" + C.PEAK_LOAD: 1.0,
    "si_" + C.PEAK_HEEL_LOAD: 1.5,
}


class DetectionInputError(ValidationError):
    """The daily-metrics table or the reference period cannot be used for detection."""

    def __init__(self, message: str, *, reason: str = "bad_daily_metrics") -> None:
        super().__init__(message, reason=reason)


@dataclass(frozen=True)
class ReferencePeriod:
    """A therapist's reference (baseline) period: the valid days from ``start_day`` to ``end_day`` inclusive."""

    start_day: Any
    end_day: Any
    set_by: str | None = None


@dataclass(frozen=True)
class Baseline:
    """The baseline of one monitored series (a row of the ``baselines`` table)."""

    metric: str
    mean: float
    #: day-to-day SD used by the detector (after shrinkage and floor)
    sd: float
    days_n: int
    start_day: Any
    end_day: Any
    source: Literal["auto", "therapist"]
    #: the raw sample SD of the baseline days (NaN with one day)
    sd_sample: float = math.nan
    set_by: str | None = None

    def to_row(self, patient: str, *, updated_us: int) -> dict[str, Any]:
        """Columns of the ``baselines`` table (migration 2)."""
        return dict(patient=patient, metric=self.metric, start_day=str(self.start_day), end_day=str(self.end_day),
                    mean=self.mean, sd=self.sd, days_n=self.days_n, source=self.source, set_by=self.set_by,
                    updated_us=int(updated_us))


@dataclass(frozen=True)
class FlagEvent:
    """One state change of a compensation flag, with its evidence (a row of the ``flags`` table)."""

    kind: str
    state: Literal["raised", "cleared", "improved"]
    day: Any
    metric: str
    baseline: float
    #: raised: mean over the days since the estimated onset; improved/cleared: mean of the last return_days days
    current: float
    #: real-change threshold in metric units (the minimal change, one day against the baseline)
    threshold: float
    #: (current - baseline) / day-to-day SD, signed in the metric's units direction
    effect_size: float
    #: raised: valid days since the estimated onset; improved/cleared: valid days back within threshold
    days_n: int
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_row(self, patient: str, *, created_us: int) -> dict[str, Any]:
        """Columns of the ``flags`` table (migration 2; ``id`` is assigned by the database)."""
        import json

        return dict(patient=patient, kind=self.kind, metric=self.metric, state=self.state, day=str(self.day),
                    baseline=self.baseline, current=self.current, threshold=self.threshold,
                    effect_size=self.effect_size, days_n=self.days_n,
                    evidence_json=json.dumps(self.evidence, sort_keys=True), created_us=int(created_us))

    def to_message(self, patient: str, *, time_us: int):
        """The :class:`insole_common.messages.FlagMessage` published on ``topics.flags_topic(patient)``."""
        from insole_common.messages import FlagMessage

        return FlagMessage(patient=patient, metric=self.metric, kind=self.kind, state=self.state,
                           baseline=self.baseline, current=self.current, threshold=self.threshold,
                           effect_size=self.effect_size, days_n=self.days_n, time_us=int(time_us))


@dataclass(frozen=True)
class _Series:
    """One monitored series: a column of the derived table, watched in one direction."""

    kind: str
    metric: str  # column of the derived table (also the flag's metric)
    prior_key: str  # key into SD_PRIORS / SD_FLOORS
    direction: int  # +1: compensation makes it go up; -1: down
    side: str | None = None
    #: metrics that must alarm at the same time (AND rule), e.g. stride_time_s with cadence
    partners: tuple[tuple[str, str, int], ...] = ()
    corroborating: tuple[str, ...] = ()


def symmetry_index(left: pd.Series | np.ndarray, right: pd.Series | np.ndarray) -> np.ndarray:
    """Symmetry index in percent, ``200 (L - R) / (L + R)``: 0 when symmetric, > 0 when the left value is larger."""
    left, right = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 200.0 * (left - right) / (left + right)


class CompensationDetector:
    """Flags sustained compensatory gait against the patient's own baseline.

    Settings are keyword-only (see the module docstring for what each does). Call
    :meth:`detect` with one patient's daily metrics; results: ``baselines_`` (metric ->
    :class:`Baseline`), ``flags_`` (list of :class:`FlagEvent`, in day order),
    ``active_`` (the raised events of flags still open, i.e. not cleared, at the last day),
    ``series_`` (long table day, metric, value, z, cusum per monitored series),
    ``skipped_`` (metric -> why it is not monitored) and ``baseline_complete_``.
    """

    def __init__(
        self,
        *,
        baseline_days: int = 10,
        min_baseline_days: int = 3,
        min_strides_n: int = 20,
        z_real_change: float = 1.96,
        cusum_k: float = 1.0,
        cusum_h: float = 4.0,
        z_clip: float = 3.5,
        min_days_beyond: int = 2,
        prior_weight_days: float = 4.0,
        return_days: int = 3,
        clear_days: int = 5,
        sd_priors: dict[str, float] | None = None,
        sd_floors: dict[str, float] | None = None,
    ) -> None:
        self.baseline_days = baseline_days
        self.min_baseline_days = min_baseline_days
        self.min_strides_n = min_strides_n
        self.z_real_change = z_real_change
        self.cusum_k = cusum_k
        self.cusum_h = cusum_h
        self.z_clip = z_clip
        self.min_days_beyond = min_days_beyond
        self.prior_weight_days = prior_weight_days
        self.return_days = return_days
        self.clear_days = clear_days
        self.sd_priors = {**SD_PRIORS, **(sd_priors or {})}
        self.sd_floors = {**SD_FLOORS, **(sd_floors or {})}

    # ------------------------------------------------------------------------------------------
    def detect(self, daily: pd.DataFrame, *, reference: ReferencePeriod | None = None) -> Self:
        self._check_settings()
        table = self._prepare(daily)
        valid = table[STRIDES_N].to_numpy(dtype=float) >= self.min_strides_n
        days = table.index
        if reference is not None:
            try:
                in_ref = (days >= reference.start_day) & (days <= reference.end_day)
            except TypeError as exc:
                raise DetectionInputError(
                    f"reference period {reference.start_day!r}..{reference.end_day!r} is not comparable with the "
                    f"day labels ({days.dtype})", reason="bad_reference") from exc
            base_mask = np.asarray(in_ref) & valid
            if base_mask.sum() < self.min_baseline_days:
                raise DetectionInputError(
                    f"reference period {reference.start_day}..{reference.end_day} has {int(base_mask.sum())} valid "
                    f"walking days; at least {self.min_baseline_days} are needed", reason="short_reference")
            source = "therapist"
        else:
            order = np.cumsum(valid)
            base_mask = valid & (order <= self.baseline_days)
            source = "auto"
        self.baseline_complete_ = bool(reference is not None or valid.sum() >= self.baseline_days)
        self.baselines_: dict[str, Baseline] = {}
        self.flags_: list[FlagEvent] = []
        self.active_: list[FlagEvent] = []
        self.skipped_: dict[str, str] = {}
        frames = []
        if not self.baseline_complete_:
            self.series_ = pd.DataFrame(columns=["day", "metric", "value", "z", "cusum"])
            return self
        last_base = np.flatnonzero(base_mask)[-1]
        monitor = valid & (np.arange(len(days)) > last_base)
        derived = self._derive(table)
        self._base_mask = base_mask
        self._last_derived = {c: derived[c].to_numpy(dtype=float) for c in derived.columns}
        set_by = reference.set_by if reference is not None else None
        events: list[FlagEvent] = []
        for series in self._series(derived, base_mask):
            base = self._baseline(series.metric, series.prior_key, derived[series.metric], base_mask, days,
                                  source, set_by)
            if base is None:
                continue
            partner_bases = []
            for metric, prior_key, _ in series.partners:
                pb = self._baseline(metric, prior_key, derived[metric], base_mask, days, source, set_by)
                if pb is None:
                    break
                partner_bases.append(pb)
            if len(partner_bases) != len(series.partners):
                self.skipped_[series.metric] = "a partner metric has no baseline"
                continue
            ev, frame = self._run(series, base, partner_bases, derived, monitor, days, base_mask)
            events.extend(ev)
            frames.append(frame)
        self.flags_ = sorted(events, key=lambda e: (e.day, KINDS.index(e.kind), e.metric))
        self.series_ = (pd.concat(frames, ignore_index=True) if frames
                        else pd.DataFrame(columns=["day", "metric", "value", "z", "cusum"]))
        return self

    # ------------------------------------------------------------------------------------------
    def _check_settings(self) -> None:
        checks = [
            (self.baseline_days >= 2, "baseline_days must be >= 2"),
            (2 <= self.min_baseline_days <= self.baseline_days, "min_baseline_days must be 2..baseline_days"),
            (self.min_strides_n >= 0, "min_strides_n must be >= 0"),
            (self.z_real_change > 0 and self.cusum_h > 0 and self.cusum_k >= 0, "thresholds must be positive"),
            (self.z_clip > self.cusum_k, "z_clip must exceed cusum_k"),
            (self.min_days_beyond >= 1 and self.return_days >= 1 and self.clear_days >= 1, "day counts must be >= 1"),
            (self.prior_weight_days >= 0, "prior_weight_days must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValidationError(f"CompensationDetector: {msg}", reason="bad_parameter")

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
        return col in derived and int(np.isfinite(derived[col].to_numpy()[base_mask]).sum()) >= self.min_baseline_days

    def _series(self, derived: pd.DataFrame, base_mask: np.ndarray) -> list[_Series]:
        out: list[_Series] = []

        def per_side(kind: str, candidates: tuple[str, ...], direction: int, corroborating: tuple[str, ...] = ()):
            for metric in candidates:
                sided = [f"{metric}_{s}" for s in ("L", "R")]
                if all(self._usable(derived, c, base_mask) for c in sided):
                    for s, col in zip(("L", "R"), sided):
                        corr = tuple(f"{c}_{s}" for c in corroborating if c != metric and f"{c}_{s}" in derived)
                        out.append(_Series(kind, col, metric, direction, side=s, corroborating=corr))
                    return
                if self._usable(derived, metric, base_mask):
                    corr = tuple(c for c in corroborating if c != metric and c in derived)
                    out.append(_Series(kind, metric, metric, direction, corroborating=corr))
                    return
            self.skipped_[kind] = f"none of {', '.join(candidates)} has {self.min_baseline_days}+ baseline days"

        per_side("lateral_shift", (C.COP_ML_MEAN_FW, C.LATERAL_LOAD_FRACTION), +1,
                 corroborating=(C.LATERAL_LOAD_FRACTION,))
        if self._usable(derived, C.STRIDE_LENGTH_M, base_mask):
            out.append(_Series("shortened_stride", C.STRIDE_LENGTH_M, C.STRIDE_LENGTH_M, -1,
                               corroborating=(C.CADENCE_STEPS_PER_MIN, C.STRIDE_TIME_S)))
        elif self._usable(derived, C.CADENCE_STEPS_PER_MIN, base_mask) and self._usable(derived, C.STRIDE_TIME_S,
                                                                                        base_mask):
            out.append(_Series("shortened_stride", C.CADENCE_STEPS_PER_MIN, C.CADENCE_STEPS_PER_MIN, +1,
                               partners=((C.STRIDE_TIME_S, C.STRIDE_TIME_S, -1),)))
        else:
            self.skipped_["shortened_stride"] = "neither stride_length_m nor cadence and stride time in the baseline"
        for metric in (C.STANCE_TIME_S, C.PEAK_LOAD, C.PEAK_HEEL_LOAD):
            col = f"si_{metric}"
            if metric == C.PEAK_HEEL_LOAD and any(s.metric == f"si_{C.PEAK_LOAD}" for s in out):
                continue  # peak_heel_load is only the stand-in for load when peak_load is not summarised
            if self._usable(derived, col, base_mask):
                # +1: the left value grows relative to the right (the right side is offloaded), -1: the reverse
                out.append(_Series("limp", col, col, +1, side="R"))
                out.append(_Series("limp", col, col, -1, side="L"))
            elif metric != C.PEAK_HEEL_LOAD:
                self.skipped_[col] = "no per-side values in the baseline"
        per_side("heel_offloading", (C.HEEL_LOAD_FRACTION,), -1)
        return out

    def _baseline(self, metric, prior_key, values: pd.Series, base_mask, days, source, set_by) -> Baseline | None:
        v = values.to_numpy(dtype=float)
        sel = base_mask & np.isfinite(v)
        n = int(sel.sum())
        if n < self.min_baseline_days:
            self.skipped_[metric] = f"{n} baseline days with a value; {self.min_baseline_days} needed"
            return None
        x = v[sel]
        mean = float(x.mean())
        sd_sample = float(x.std(ddof=1)) if n > 1 else math.nan
        nu, nu0 = n - 1, self.prior_weight_days
        prior = self.sd_priors.get(prior_key, self.sd_floors.get(prior_key, 0.0))
        var = (nu * (0.0 if math.isnan(sd_sample) else sd_sample) ** 2 + nu0 * prior ** 2) / max(nu + nu0, 1e-12)
        sd = max(math.sqrt(var), self.sd_floors.get(prior_key, 0.0))
        if not sd > 0:
            self.skipped_[metric] = "zero day-to-day SD and no floor"
            return None
        idx = np.flatnonzero(sel)
        base = Baseline(metric=metric, mean=mean, sd=sd, days_n=n, start_day=_label(days[idx[0]]),
                        end_day=_label(days[idx[-1]]), source=source, sd_sample=sd_sample, set_by=set_by)
        self.baselines_[metric] = base
        return base

    # ------------------------------------------------------------------------------------------
    def _run(self, series: _Series, base: Baseline, partner_bases: list[Baseline], derived: pd.DataFrame,
             monitor: np.ndarray, days: pd.Index, base_mask: np.ndarray) -> tuple[list[FlagEvent], pd.DataFrame]:
        """The CUSUM and the flag state machine of one series over the monitored days (a loop over days)."""
        comps = [(series.metric, series.direction, base)] + [
            (m, d, pb) for (m, _, d), pb in zip(series.partners, partner_bases)]
        values = {m: derived[m].to_numpy(dtype=float) for m, _, _ in comps}
        n_b = base.days_n
        pred = {m: b.sd * math.sqrt(1.0 + 1.0 / b.days_n) for m, _, b in comps}
        z_all = {m: d * (values[m] - b.mean) / pred[m] for m, d, b in comps}
        k, h, zr = self.cusum_k, self.cusum_h, self.z_real_change
        ret_thr = zr * base.sd * math.sqrt(1.0 / self.return_days + 1.0 / n_b)
        day_thr = zr * pred[series.metric]
        x = values[series.metric]
        cusum = {m: 0.0 for m, _, _ in comps}
        run_start: dict[str, int | None] = {m: None for m, _, _ in comps}  # first index after the CUSUM left 0
        state = "normal"
        back_n = 0
        recent: list[int] = []  # indices of valid monitored days with a value, newest last
        events: list[FlagEvent] = []
        rows = []
        for i in np.flatnonzero(monitor):
            if not all(np.isfinite(values[m][i]) for m, _, _ in comps):
                continue
            recent.append(i)
            for m, _, _ in comps:
                prev = cusum[m]
                cusum[m] = max(0.0, prev + min(z_all[m][i], self.z_clip) - k)
                if cusum[m] == 0.0:
                    run_start[m] = None
                elif prev == 0.0 or run_start[m] is None:
                    run_start[m] = i
            rows.append((_label(days[i]), series.metric, x[i], z_all[series.metric][i], cusum[series.metric]))
            alarm = all(cusum[m] > h for m, _, _ in comps)
            if alarm:
                start = run_start[series.metric]
                run = [j for j in recent if j >= start]
                beyond = int(sum(z_all[series.metric][j] >= zr for j in run))
                alarm = beyond >= self.min_days_beyond
            if state in ("normal", "improved") and alarm:
                events.append(self._raised(series, base, comps, values, z_all, cusum, run, beyond, days, i,
                                           day_thr, relapse=state == "improved"))
                self.active_ = [e for e in self.active_ if not _same_series(e, series)] + [events[-1]]
                state, back_n = "raised", 0
                continue
            if state in ("raised", "improved"):
                last = recent[-self.return_days:]
                level = float(np.mean(x[last]))
                is_back = len(last) == self.return_days and series.direction * (level - base.mean) < ret_thr
                back_n = back_n + 1 if is_back else 0
                if state == "raised" and is_back:
                    state = "improved"
                    for m, _, _ in comps:  # a relapse must build up again from here
                        cusum[m], run_start[m] = 0.0, None
                    events.append(self._returned("improved", series, base, level, ret_thr, back_n, last, days, i,
                                                 day_thr, z_all))
                elif state == "improved" and back_n >= self.clear_days:
                    state = "normal"
                    events.append(self._returned("cleared", series, base, level, ret_thr, back_n, last, days, i,
                                                 day_thr, z_all))
                    self.active_ = [e for e in self.active_ if not _same_series(e, series)]
        frame = pd.DataFrame(rows, columns=["day", "metric", "value", "z", "cusum"])
        frame["direction"] = series.direction
        frame["kind"] = series.kind
        return events, frame

    def _raised(self, series, base, comps, values, z_all, cusum, run, beyond, days, i, day_thr, *, relapse):
        x = values[series.metric]
        current = float(np.mean(x[run]))
        evidence: dict[str, Any] = {
            "rule": (f"one-sided CUSUM of z = {'+' if series.direction > 0 else '-'}(value - baseline) / "
                     f"(sd sqrt(1 + 1/n)) with k = {self.cusum_k}, h = {self.cusum_h}, z capped at {self.z_clip}; "
                     f">= {self.min_days_beyond} days beyond z = {self.z_real_change}"),
            "direction": "up" if series.direction > 0 else "down",
            "side": series.side,
            "baseline_source": base.source,
            "baseline_days": [str(base.start_day), str(base.end_day)],
            "baseline_days_n": base.days_n,
            "sd_day": base.sd,
            "sd_sample": None if math.isnan(base.sd_sample) else base.sd_sample,
            "onset_day": str(_label(days[run[0]])),
            "days": [str(_label(days[j])) for j in run],
            "values": [float(x[j]) for j in run],
            "z": [round(float(z_all[series.metric][j]), 3) for j in run],
            "days_beyond_n": beyond,
            "cusum": round(float(cusum[series.metric]), 3),
            "relapse": relapse,
        }
        if series.partners:
            evidence["partners"] = {m: {"baseline": b.mean, "current": float(np.mean(values[m][run])),
                                        "cusum": round(float(cusum[m]), 3)} for m, _, b in comps[1:]}
        corr = {}
        for c in series.corroborating:
            v = self._last_derived.get(c)
            if v is not None and np.isfinite(v[self._base_mask]).any() and np.isfinite(v[run]).any():
                corr[c] = {"baseline": float(np.nanmean(v[self._base_mask])), "current": float(np.nanmean(v[run]))}
        if corr:
            evidence["corroborating"] = corr
        if series.kind == "limp":
            evidence["affected_side"] = series.side
        return FlagEvent(kind=series.kind, state="raised", day=_label(days[i]), metric=series.metric,
                         baseline=base.mean, current=current, threshold=day_thr,
                         effect_size=(current - base.mean) / base.sd, days_n=len(run), evidence=evidence)

    def _returned(self, state, series, base, level, ret_thr, back_n, last, days, i, day_thr, z_all):
        evidence = {
            "rule": f"mean of the last {self.return_days} valid days within {self.z_real_change} sd sqrt(1/m + 1/n) "
                    f"of the baseline" + (f" for {self.clear_days} consecutive days" if state == "cleared" else ""),
            "direction": "up" if series.direction > 0 else "down",
            "side": series.side,
            "days": [str(_label(days[j])) for j in last],
            "z": [round(float(z_all[series.metric][j]), 3) for j in last],
            "return_threshold": ret_thr,
        }
        return FlagEvent(kind=series.kind, state=state, day=_label(days[i]), metric=series.metric,
                         baseline=base.mean, current=level, threshold=day_thr,
                         effect_size=(level - base.mean) / base.sd, days_n=back_n, evidence=evidence)


def _same_series(event: FlagEvent, series: _Series) -> bool:
    return (event.kind == series.kind and event.metric == series.metric
            and event.evidence.get("direction") == ("up" if series.direction > 0 else "down"))


def _label(day: Any) -> Any:
    """Day labels as plain Python values (numpy ints -> int, Timestamps -> date strings)."""
    if isinstance(day, np.integer):
        return int(day)
    if isinstance(day, pd.Timestamp):
        return day.strftime("%Y-%m-%d")
    return day


def detect(daily: pd.DataFrame, *, reference: ReferencePeriod | None = None, **settings) -> CompensationDetector:
    """``CompensationDetector(**settings).detect(daily, reference=reference)``."""
    return CompensationDetector(**settings).detect(daily, reference=reference)
