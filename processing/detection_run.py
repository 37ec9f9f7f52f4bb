"""One monitored series of :class:`processing.detection.CompensationDetector` over the monitored days: its
one-sided CUSUMs (:class:`_CusumRun`) and its flag state machine, normal -> raised -> improved -> cleared,
with a relapse raising again from improved (:func:`run_series`), and the evidence of each event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from processing.detection_records import Baseline, FlagEvent
from processing.detection_settings import DetectionSettings

SERIES_COLS = ["day", "metric", "value", "z", "cusum"]


@dataclass(frozen=True)
class Series:
    """One monitored series: a column of the derived table, watched in one direction."""

    kind: str
    metric: str  # column of the derived table (also the flag's metric)
    prior_key: str  # key into sd_priors / sd_floors
    direction: int  # +1: compensation makes it go up; -1: down
    side: str | None = None
    #: metrics that must alarm at the same time (AND rule), e.g. stride_time_s with cadence
    partners: tuple[tuple[str, str, int], ...] = ()
    corroborating: tuple[str, ...] = ()
    #: added to the evidence of a raise (how the values were made: the stride-length source, the cadence adjustment)
    extra: dict[str, Any] = field(default_factory=dict)


def run_series(series: Series, base: Baseline, partner_bases: list[Baseline], derived: pd.DataFrame,
               monitor: np.ndarray, days: pd.Index, base_mask: np.ndarray,
               settings: DetectionSettings) -> tuple[list[FlagEvent], pd.DataFrame]:
    """The CUSUM and the flag state machine of one series over the monitored days (a loop over days).

    ``base_mask``: the baseline days (for the corroborating metrics' baseline in the evidence)."""
    s = settings
    run = _CusumRun(series, base, partner_bases, derived, s)
    ret_thr = s.z_real_change * base.sd * math.sqrt(1.0 / s.return_days + 1.0 / base.days_n)
    x = run.values[series.metric]
    state, back_n = "normal", 0
    events: list[FlagEvent] = []
    for i in np.flatnonzero(monitor).tolist():
        if not run.step(i, day_label(days[i])):
            continue
        if state in ("normal", "improved"):
            onset = run.alarm()
            if onset is not None:
                events.append(_raised(series, base, run, onset, days, i, base_mask, relapse=state == "improved"))
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
            events.append(_returned("improved", series, base, level, ret_thr, back_n, last, days, i, run))
        elif state == "improved" and back_n >= s.clear_days:
            state = "normal"
            events.append(_returned("cleared", series, base, level, ret_thr, back_n, last, days, i, run))
    frame = pd.DataFrame(run.rows, columns=SERIES_COLS)
    frame["direction"] = series.direction
    frame["kind"] = series.kind
    return events, frame

def _raised(series, base, run: _CusumRun, onset: list[int], days, i, base_mask, *, relapse) -> FlagEvent:
    s = run.settings
    x, z = run.values[series.metric], run.z[series.metric]
    current = float(np.mean(x[onset]))
    sign = "+" if series.direction > 0 else "-"
    if run.last_rule == "mean":
        rule = (f"mean of the last {s.mean_rule_days} valid days: {sign}(mean - baseline) beyond {run.mean_z} "
                f"sd sqrt(1/m + 1/n)")
    else:
        rule = (f"one-sided CUSUM of z = {sign}(value - baseline) / (sd sqrt(1 + 1/n)) with k = {run.k}, h = {run.h}, "
                f"z capped at {s.z_clip}; >= {run.days_beyond} days beyond z = {s.z_real_change}")
    evidence: dict[str, Any] = {
        "rule": rule,
        "rule_kind": run.last_rule,
        "direction": "up" if series.direction > 0 else "down",
        "side": series.side,
        "baseline_source": base.source,
        "baseline_days": [str(base.start_day), str(base.end_day)],
        "baseline_days_n": base.days_n,
        "sd_day": base.sd,
        "sd_sample": None if math.isnan(base.sd_sample) else base.sd_sample,
        "onset_day": str(day_label(days[onset[0]])),
        "days": [str(day_label(days[j])) for j in onset],
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
        v = run.derived[c].to_numpy(dtype=float) if c in run.derived else None
        if v is not None and np.isfinite(v[base_mask]).any() and np.isfinite(v[onset]).any():
            corr[c] = {"baseline": float(np.nanmean(v[base_mask])), "current": float(np.nanmean(v[onset]))}
    if corr:
        evidence["corroborating"] = corr
    if series.kind == "limp":
        evidence["affected_side"] = series.side
    evidence.update(series.extra)
    return FlagEvent(kind=series.kind, state="raised", day=day_label(days[i]), metric=series.metric,
                     baseline=base.mean, current=current, threshold=base.threshold,
                     effect_size=(current - base.mean) / base.sd, days_n=len(onset), evidence=evidence)

def _returned(state, series, base, level, ret_thr, back_n, last, days, i, run: _CusumRun) -> FlagEvent:
    s = run.settings
    evidence = {
        "rule": f"mean of the last {s.return_days} valid days within {s.z_real_change} sd sqrt(1/m + 1/n) "
                f"of the baseline" + (f" for {s.clear_days} consecutive days" if state == "cleared" else ""),
        "direction": "up" if series.direction > 0 else "down",
        "side": series.side,
        "days": [str(day_label(days[j])) for j in last],
        "z": [round(float(run.z[series.metric][j]), 3) for j in last],
        "return_threshold": ret_thr,
    }
    return FlagEvent(kind=series.kind, state=state, day=day_label(days[i]), metric=series.metric,
                     baseline=base.mean, current=level, threshold=base.threshold,
                     effect_size=(level - base.mean) / base.sd, days_n=back_n, evidence=evidence)


class _CusumRun:
    """The one-sided CUSUMs of one series and its partners, advanced one valid monitored day at a time."""

    def __init__(self, series: Series, base: Baseline, partner_bases: list[Baseline], derived: pd.DataFrame,
                 settings: DetectionSettings) -> None:
        self.series, self.settings, self.derived = series, settings, derived
        self.k, self.h, self.days_beyond = settings.cusum_for(series.kind)
        self.comps = [(series.metric, series.direction, base)] + [
            (m, d, pb) for (m, _, d), pb in zip(series.partners, partner_bases, strict=True)]
        self.values = {m: derived[m].to_numpy(dtype=float) for m, _, _ in self.comps}
        self.z = {m: d * (self.values[m] - b.mean) / b.prediction_sd for m, d, b in self.comps}
        self.cusum = {m: 0.0 for m, _, _ in self.comps}
        self.run_start: dict[str, int | None] = {m: None for m, _, _ in self.comps}  # first index after leaving 0
        self.recent: list[int] = []  # indices of valid monitored days with a value, newest last
        self.since = 0  # the mean rule's days start at recent[since:] (moved on at each restart)
        self.mean_z = settings.mean_rule_z_by_kind.get(series.kind)
        self.last_rule = "cusum"  # the rule that made the last alarm
        self.rows: list[tuple] = []  # the series_ rows

    def step(self, i: int, day: Any) -> bool:
        """Add day ``i``; False (and nothing changes) when a component has no value that day."""
        if not all(np.isfinite(self.values[m][i]) for m in self.values):
            return False
        self.recent.append(i)
        for m in self.cusum:
            prev = self.cusum[m]
            self.cusum[m] = max(0.0, prev + min(self.z[m][i], self.settings.z_clip) - self.k)
            if self.cusum[m] == 0.0:
                self.run_start[m] = None
            elif prev == 0.0 or self.run_start[m] is None:
                self.run_start[m] = i
        metric = self.series.metric
        self.rows.append((day, metric, self.values[metric][i], self.z[metric][i], self.cusum[metric]))
        return True

    def alarm(self) -> list[int] | None:
        """The days since the estimated onset when the CUSUM rule or the mean rule alarms, else None."""
        onset = self._cusum_alarm()
        self.last_rule = "cusum"
        if onset is None and self.mean_z is not None:
            onset = self._mean_alarm()
            self.last_rule = "mean"
        return onset

    def _cusum_alarm(self) -> list[int] | None:
        """Every CUSUM over ``cusum_h`` with enough days beyond the real-change threshold: the days since the
        estimated onset."""
        s = self.settings
        if not all(c > self.h for c in self.cusum.values()):
            return None
        metric = self.series.metric
        start = self.run_start[metric]
        assert start is not None  # (a CUSUM over cusum_h > 0 has left 0)
        onset = [j for j in self.recent if j >= start]
        beyond = int(sum(self.z[metric][j] >= s.z_real_change for j in onset))
        return onset if beyond >= self.days_beyond else None

    def _mean_alarm(self) -> list[int] | None:
        """The mean of the last ``mean_rule_days`` valid days (since the last restart) of every component beyond
        ``mean_z`` sd sqrt(1/m + 1/n) in the compensation direction, each day's deviation capped at ``z_clip``
        prediction SDs: those days."""
        m = self.settings.mean_rule_days
        days = self.recent[self.since:]
        if len(days) < m or self.mean_z is None:
            return None
        last = days[-m:]
        for metric, direction, base in self.comps:
            # each day capped at z_clip prediction SDs, as in the CUSUM: one day can never raise a flag
            dev = np.minimum(direction * (self.values[metric][last] - base.mean), self.settings.z_clip * base.prediction_sd)
            if not float(np.mean(dev)) > self.mean_z * base.sd * math.sqrt(1.0 / m + 1.0 / base.days_n):
                return None
        return last

    def restart(self) -> None:
        for m in self.cusum:
            self.cusum[m], self.run_start[m] = 0.0, None
        self.since = len(self.recent)


def day_label(day: Any) -> Any:
    """Day labels as plain Python values (numpy ints -> int, Timestamps -> date strings)."""
    if isinstance(day, np.integer):
        return int(day)
    if isinstance(day, pd.Timestamp):
        return day.strftime("%Y-%m-%d")
    return day
