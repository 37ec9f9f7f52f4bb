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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from insole_common import metrics as C
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
from processing.detection_settings import SD_FLOORS, SD_PRIORS, DetectionSettings  # noqa: F401

try:  # Python 3.11+
    from typing import Self
except ImportError:  # pragma: no cover
    from typing_extensions import Self

STRIDES_N = "strides_n"
_SERIES_COLS = ["day", "metric", "value", "z", "cusum"]


@dataclass(frozen=True)
class _Series:
    """One monitored series: a column of the derived table, watched in one direction."""

    kind: str
    metric: str  # column of the derived table (also the flag's metric)
    prior_key: str  # key into sd_priors / sd_floors
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
    def detect(self, daily: pd.DataFrame, *, reference: ReferencePeriod | None = None) -> Self:
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
        self.series_ = pd.DataFrame(columns=_SERIES_COLS)
        if not self.baseline_complete_:
            return self
        monitor = valid & (np.arange(len(days)) > np.flatnonzero(base_mask)[-1])
        derived = self._derive(table)
        self._base_mask = base_mask
        self._last_derived = {c: derived[c].to_numpy(dtype=float) for c in derived.columns}
        events: list[FlagEvent] = []
        frames = []
        for series in self._series(derived, base_mask):
            bases = []
            for metric, prior_key in [(series.metric, series.prior_key)] + [p[:2] for p in series.partners]:
                bases.append(self._baseline(metric, prior_key, derived[metric], base_mask, days, source, set_by))
                if bases[-1] is None:
                    break
            if bases[-1] is None:
                if len(bases) > 1:
                    self.skipped_[series.metric] = "a partner metric has no baseline"
                continue
            ev, frame = self._run(series, bases[0], bases[1:], derived, monitor, days)
            events.extend(ev)
            frames.append(frame)
        self.flags_ = sorted(events, key=lambda e: (e.day, KINDS.index(e.kind), e.metric))
        self.status_ = flag_status(self.flags_)
        self.active_ = [e for e, st in zip(self.flags_, self.status_) if st.active]
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

    def _per_side(self, out: list[_Series], derived, base_mask, kind: str, candidates: tuple[str, ...],
                  corroborating: tuple[str, ...] = ()) -> None:
        """The first of ``candidates`` usable per side (else both sides together), in its catalogue direction."""
        for metric in candidates:
            direction = _compensation(metric)
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
        self.skipped_[kind] = f"none of {', '.join(candidates)} has {self.settings.min_baseline_days}+ baseline days"

    def _series(self, derived: pd.DataFrame, base_mask: np.ndarray) -> list[_Series]:
        out: list[_Series] = []
        self._per_side(out, derived, base_mask, "lateral_shift", (C.COP_ML_MEAN_FW, C.LATERAL_LOAD_FRACTION),
                       corroborating=(C.LATERAL_LOAD_FRACTION,))
        if self._usable(derived, C.STRIDE_LENGTH_M, base_mask):
            out.append(_Series("shortened_stride", C.STRIDE_LENGTH_M, C.STRIDE_LENGTH_M,
                               _compensation(C.STRIDE_LENGTH_M),
                               corroborating=(C.CADENCE_STEPS_PER_MIN, C.STRIDE_TIME_S)))
        elif self._usable(derived, C.CADENCE_STEPS_PER_MIN, base_mask) and self._usable(derived, C.STRIDE_TIME_S,
                                                                                        base_mask):
            # NB: cadence UP / stride time DOWN contradicts the catalogue (heel pain slows); kept until replaced
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
        self._per_side(out, derived, base_mask, "heel_offloading", (C.HEEL_LOAD_FRACTION,))
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
        prior = s.sd_priors.get(prior_key, s.sd_floors.get(prior_key, 0.0))
        var = (nu * (0.0 if math.isnan(sd_sample) else sd_sample) ** 2 + nu0 * prior ** 2) / max(nu + nu0, 1e-12)
        sd = max(math.sqrt(var), s.sd_floors.get(prior_key, 0.0))
        if not sd > 0:
            self.skipped_[metric] = "zero day-to-day SD and no floor"
            return None
        idx = np.flatnonzero(sel)
        base = Baseline(metric=metric, mean=mean, sd=sd, days_n=n, start_day=_label(days[idx[0]]),
                        end_day=_label(days[idx[-1]]), source=source, sd_sample=sd_sample, set_by=set_by,
                        settings=s)
        self.baselines_[metric] = base
        return base

    # ------------------------------------------------------------------------------------------
    def _run(self, series: _Series, base: Baseline, partner_bases: list[Baseline], derived: pd.DataFrame,
             monitor: np.ndarray, days: pd.Index) -> tuple[list[FlagEvent], pd.DataFrame]:
        """The CUSUM and the flag state machine of one series over the monitored days (a loop over days)."""
        s = self.settings
        run = _CusumRun(series, base, partner_bases, derived, s)
        ret_thr = s.z_real_change * base.sd * math.sqrt(1.0 / s.return_days + 1.0 / base.days_n)
        x = run.values[series.metric]
        state, back_n = "normal", 0
        events: list[FlagEvent] = []
        for i in np.flatnonzero(monitor):
            if not run.step(i, _label(days[i])):
                continue
            if state in ("normal", "improved"):
                onset = run.alarm()
                if onset is not None:
                    events.append(self._raised(series, base, run, onset, days, i, relapse=state == "improved"))
                    state, back_n = "raised", 0
                    continue
            if state == "normal":
                continue
            last = run.recent[-s.return_days:]
            level = float(np.mean(x[last]))
            is_back = len(last) == s.return_days and series.direction * (level - base.mean) < ret_thr
            back_n = back_n + 1 if is_back else 0
            if state == "raised" and is_back:
                state = "improved"
                run.restart()  # a relapse must build up again from here
                events.append(self._returned("improved", series, base, level, ret_thr, back_n, last, days, i, run))
            elif state == "improved" and back_n >= s.clear_days:
                state = "normal"
                events.append(self._returned("cleared", series, base, level, ret_thr, back_n, last, days, i, run))
        frame = pd.DataFrame(run.rows, columns=_SERIES_COLS)
        frame["direction"] = series.direction
        frame["kind"] = series.kind
        return events, frame

    def _raised(self, series, base, run: _CusumRun, onset: list[int], days, i, *, relapse) -> FlagEvent:
        s = self.settings
        x, z = run.values[series.metric], run.z[series.metric]
        current = float(np.mean(x[onset]))
        evidence: dict[str, Any] = {
            "rule": (f"one-sided CUSUM of z = {'+' if series.direction > 0 else '-'}(value - baseline) / "
                     f"(sd sqrt(1 + 1/n)) with k = {s.cusum_k}, h = {s.cusum_h}, z capped at {s.z_clip}; "
                     f">= {s.min_days_beyond} days beyond z = {s.z_real_change}"),
            "direction": "up" if series.direction > 0 else "down",
            "side": series.side,
            "baseline_source": base.source,
            "baseline_days": [str(base.start_day), str(base.end_day)],
            "baseline_days_n": base.days_n,
            "sd_day": base.sd,
            "sd_sample": None if math.isnan(base.sd_sample) else base.sd_sample,
            "onset_day": str(_label(days[onset[0]])),
            "days": [str(_label(days[j])) for j in onset],
            "values": [float(x[j]) for j in onset],
            "z": [round(float(z[j]), 3) for j in onset],
            "days_beyond_n": int(sum(z[j] >= s.z_real_change for j in onset)),
            "cusum": round(float(run.cusum[series.metric]), 3),
            "relapse": relapse,
        }
        if series.partners:
            evidence["partners"] = {m: {"baseline": b.mean, "current": float(np.mean(run.values[m][onset])),
                                        "cusum": round(float(run.cusum[m]), 3)} for m, _, b in run.comps[1:]}
        corr = {}
        for c in series.corroborating:
            v = self._last_derived.get(c)
            if v is not None and np.isfinite(v[self._base_mask]).any() and np.isfinite(v[onset]).any():
                corr[c] = {"baseline": float(np.nanmean(v[self._base_mask])), "current": float(np.nanmean(v[onset]))}
        if corr:
            evidence["corroborating"] = corr
        if series.kind == "limp":
            evidence["affected_side"] = series.side
        return FlagEvent(kind=series.kind, state="raised", day=_label(days[i]), metric=series.metric,
                         baseline=base.mean, current=current, threshold=base.threshold,
                         effect_size=(current - base.mean) / base.sd, days_n=len(onset), evidence=evidence)

    def _returned(self, state, series, base, level, ret_thr, back_n, last, days, i, run: _CusumRun) -> FlagEvent:
        s = self.settings
        evidence = {
            "rule": f"mean of the last {s.return_days} valid days within {s.z_real_change} sd sqrt(1/m + 1/n) "
                    f"of the baseline" + (f" for {s.clear_days} consecutive days" if state == "cleared" else ""),
            "direction": "up" if series.direction > 0 else "down",
            "side": series.side,
            "days": [str(_label(days[j])) for j in last],
            "z": [round(float(run.z[series.metric][j]), 3) for j in last],
            "return_threshold": ret_thr,
        }
        return FlagEvent(kind=series.kind, state=state, day=_label(days[i]), metric=series.metric,
                         baseline=base.mean, current=level, threshold=base.threshold,
                         effect_size=(level - base.mean) / base.sd, days_n=back_n, evidence=evidence)


class _CusumRun:
    """The one-sided CUSUMs of one series and its partners, advanced one valid monitored day at a time."""

    def __init__(self, series: _Series, base: Baseline, partner_bases: list[Baseline], derived: pd.DataFrame,
                 settings: DetectionSettings) -> None:
        self.series, self.settings = series, settings
        self.comps = [(series.metric, series.direction, base)] + [
            (m, d, pb) for (m, _, d), pb in zip(series.partners, partner_bases)]
        self.values = {m: derived[m].to_numpy(dtype=float) for m, _, _ in self.comps}
        self.z = {m: d * (self.values[m] - b.mean) / b.prediction_sd for m, d, b in self.comps}
        self.cusum = {m: 0.0 for m, _, _ in self.comps}
        self.run_start: dict[str, int | None] = {m: None for m, _, _ in self.comps}  # first index after leaving 0
        self.recent: list[int] = []  # indices of valid monitored days with a value, newest last
        self.rows: list[tuple] = []  # the series_ rows

    def step(self, i: int, day: Any) -> bool:
        """Add day ``i``; False (and nothing changes) when a component has no value that day."""
        if not all(np.isfinite(self.values[m][i]) for m in self.values):
            return False
        self.recent.append(i)
        for m in self.cusum:
            prev = self.cusum[m]
            self.cusum[m] = max(0.0, prev + min(self.z[m][i], self.settings.z_clip) - self.settings.cusum_k)
            if self.cusum[m] == 0.0:
                self.run_start[m] = None
            elif prev == 0.0 or self.run_start[m] is None:
                self.run_start[m] = i
        metric = self.series.metric
        self.rows.append((day, metric, self.values[metric][i], self.z[metric][i], self.cusum[metric]))
        return True

    def alarm(self) -> list[int] | None:
        """The days since the estimated onset when every CUSUM is over ``cusum_h`` with enough days beyond
        the real-change threshold, else None."""
        s = self.settings
        if not all(c > s.cusum_h for c in self.cusum.values()):
            return None
        metric = self.series.metric
        onset = [j for j in self.recent if j >= self.run_start[metric]]
        beyond = int(sum(self.z[metric][j] >= s.z_real_change for j in onset))
        return onset if beyond >= s.min_days_beyond else None

    def restart(self) -> None:
        for m in self.cusum:
            self.cusum[m], self.run_start[m] = 0.0, None


def _label(day: Any) -> Any:
    """Day labels as plain Python values (numpy ints -> int, Timestamps -> date strings)."""
    if isinstance(day, np.integer):
        return int(day)
    if isinstance(day, pd.Timestamp):
        return day.strftime("%Y-%m-%d")
    return day


def detect(daily: pd.DataFrame, *, reference: ReferencePeriod | None = None,
           settings: DetectionSettings | None = None, **overrides: Any) -> CompensationDetector:
    """``CompensationDetector(settings, **overrides).detect(daily, reference=reference)``."""
    return CompensationDetector(settings, **overrides).detect(daily, reference=reference)
