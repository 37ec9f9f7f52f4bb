"""What compensation detection produces and stores: baselines, flag events and the state of each flag.

A *flag* is one series (kind, metric, direction) from a ``raised`` event until a ``cleared`` event of the
same series; ``improved`` does not end it, and a relapse (raised again after improved) continues it.
:func:`flag_status` is the one place that decides which flags are open; the detector's ``active_``,
the ``flags`` table's ``active`` / ``since_day`` / ``cleared_day`` and every view read that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from insole_common.errors import ValidationError
from insole_common.messages import FlagMessage
from processing.detection_settings import DetectionSettings

KINDS = ("lateral_shift", "shortened_stride", "slowing", "limp", "heel_offloading")
STATES = ("raised", "cleared", "improved")


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
    #: the settings of the detection that made it
    settings: DetectionSettings = field(default_factory=DetectionSettings)

    @property
    def prediction_sd(self) -> float:
        """SD of a new day's deviation from ``mean``: the day's own noise and the error of the mean."""
        return self.sd * math.sqrt(1.0 + 1.0 / self.days_n)

    @property
    def threshold(self) -> float:
        """The real-change threshold for one day in metric units, ``z_real_change * prediction_sd``."""
        return self.settings.z_real_change * self.prediction_sd

    def to_row(self, patient: str, *, updated_us: int) -> dict[str, Any]:
        """Columns of the ``baselines`` table (migrations 2 and 8)."""
        return dict(patient=patient, metric=self.metric, start_day=str(self.start_day), end_day=str(self.end_day),
                    mean=self.mean, sd=self.sd, days_n=self.days_n, source=self.source, set_by=self.set_by,
                    updated_us=int(updated_us), threshold=self.threshold, band_low=self.mean - self.threshold,
                    band_high=self.mean + self.threshold, settings_json=self.settings.to_json())


@dataclass(frozen=True)
class FlagStatus:
    """Where a flag event stands in its flag's life (meaningful for ``raised`` events; others: all unset)."""

    #: the event is the latest raise of a flag still open after the last day
    active: bool = False
    #: the day the flag was first raised (the relapses' first raise too)
    since_day: Any = None
    #: the day the flag was cleared; None while it is open
    cleared_day: Any = None


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

    @property
    def series(self) -> tuple[str, str, str | None]:
        """The flag it belongs to: kind, metric and direction ('up' / 'down')."""
        return self.kind, self.metric, self.evidence.get("direction")

    def to_row(self, patient: str, *, created_us: int, status: FlagStatus = FlagStatus()) -> dict[str, Any]:
        """Columns of the ``flags`` table (migrations 2 and 8; ``id`` is assigned by the database)."""
        return dict(patient=patient, kind=self.kind, metric=self.metric, state=self.state, day=str(self.day),
                    baseline=self.baseline, current=self.current, threshold=self.threshold,
                    effect_size=self.effect_size, days_n=self.days_n,
                    evidence_json=json.dumps(self.evidence, sort_keys=True), created_us=int(created_us),
                    active=int(status.active), since_day=_day_or_none(status.since_day),
                    cleared_day=_day_or_none(status.cleared_day))

    def to_message(self, patient: str, *, time_us: int) -> FlagMessage:
        """The :class:`insole_common.messages.FlagMessage` published on ``topics.flags_topic(patient)``."""
        return FlagMessage(patient=patient, metric=self.metric, kind=self.kind, state=self.state,
                           baseline=self.baseline, current=self.current, threshold=self.threshold,
                           effect_size=self.effect_size, days_n=self.days_n, time_us=int(time_us))


def _day_or_none(day: Any) -> str | None:
    return None if day is None else str(day)


def flag_status(events: Sequence[FlagEvent]) -> list[FlagStatus]:
    """The status of each event (same order; ``events`` in day order, as ``CompensationDetector.flags_``).

    A flag opens at a ``raised`` event of a series with no open flag and closes at the next ``cleared`` event
    of that series. Its raised events get ``since_day`` (its first raise) and ``cleared_day``; the latest of
    them is ``active`` while the flag is open.
    """
    out = [FlagStatus()] * len(events)
    open_raises: dict[tuple, list[int]] = {}  # series -> indices of the raised events of its open flag
    for i, event in enumerate(events):
        if event.state == "raised":
            open_raises.setdefault(event.series, []).append(i)
        elif event.state == "cleared":
            raises = open_raises.pop(event.series, [])
            for j in raises:
                out[j] = FlagStatus(False, events[raises[0]].day, event.day)
    for raises in open_raises.values():
        for j in raises:
            out[j] = FlagStatus(j == raises[-1], events[raises[0]].day, None)
    return out
