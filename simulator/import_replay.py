"""Real walks replayed as a patient's days through ``kinetic import`` (:func:`processing.importer.import_recording`),
with realistic day-to-day variation and, from an onset day, a known change (docs/validation.md, issue 19).

Each day has ``sessions_per_day`` sessions, each a window of ``window_fraction`` of the walk at a random offset.
The day's walking speed is drawn around the patient's own (cadence CV ``cadence_cv``, by time-stretching; a share
``speed_day_fraction`` of days are slow or fast days, speed x 0.90 / 1.10, the walk ratio kept so cadence moves by
the square root); ``missing_day_fraction`` of days are not walked. The patient's walk-ratio calibration is a 10 m
stretch of the walk at the speed the dataset reports for it (``speed_m_s``), else the height prior.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from insole_common.errors import ValidationError
from processing.analytics import analyze
from processing.analytics.walk_ratio import WalkRatio
from processing.detection_settings import DetectionSettings
from processing.flags import save_walk_ratio
from processing.importer import import_recording
from processing.service import ProcessingService
from processing.summaries import daily_table
from simulator.changes import stretch_time, transfer_load
from simulator.cohort import TRANSFERS, Change, cut_recording
from storage import flags as flag_store, patients
from storage.store import Store

FIRST_DAY = date(2026, 1, 5)


@dataclass(frozen=True, kw_only=True)
class ReplayDays:
    """How the days of a replayed walk vary (module docstring)."""

    n_days: int = 28
    sessions_per_day: int = 2
    window_fraction: float = 0.4
    cadence_cv: float = 0.02
    speed_day_fraction: float = 0.15
    speed_day_change: float = 0.10
    missing_day_fraction: float = 0.10


def day_label(i: int) -> str:
    return (FIRST_DAY + timedelta(days=i)).isoformat()


def calibrate(store: Store, recording, patient: str, speed_m_s: float | None, rng: np.random.Generator) -> WalkRatio:
    """The patient's walk ratio from a 10 m stretch of the walk at its known speed (the height prior without one)."""
    wr = WalkRatio.from_height(1.70)
    if speed_m_s is not None:
        duration_s = min(f.duration_s for f in recording.feet.values())
        walk_s = 10.0 / speed_m_s
        start = float(rng.uniform(0.0, max(duration_s - walk_s, 0.0)))
        strides = analyze(cut_recording(recording, start, start + walk_s)).strides
        hs = np.sort(strides["heel_strike_s"].to_numpy(float))
        with contextlib.suppress(ValidationError):  # too slow for an adult walk ratio (0.36 m/s): the height prior
            wr = WalkRatio.from_walk(strides, distance_m=speed_m_s * float(hs[-1] - hs[0]), steps_n=len(hs) - 1)
    save_walk_ratio(store, patient, wr, now_us=0, settings=DetectionSettings.from_env())
    return wr


def replay_patient(store: Store, recording, *, patient: str, change: Change, seed: int,
                   days: ReplayDays = ReplayDays(), speed_m_s: float | None = None,
                   service: ProcessingService | None = None) -> dict:
    """Import the patient's days; returns the raised flags as (kind, day index, metric, side) and the days."""
    rng = np.random.default_rng(seed)
    patients.register_patient(store, patient, 0)
    calibrate(store, recording, patient, speed_m_s, rng)
    service = service or ProcessingService(store, live_strides=False)
    duration_s = min(f.duration_s for f in recording.feet.values())
    window_s = days.window_fraction * duration_s
    for i in range(days.n_days):
        if rng.uniform() < days.missing_day_fraction:
            continue
        cadence = math.exp(days.cadence_cv * rng.normal())
        if rng.uniform() < days.speed_day_fraction:
            cadence *= math.sqrt(1.0 + days.speed_day_change * (1 if rng.uniform() < 0.5 else -1))
        if change.active(i) and change.kind in ("slower", "faster"):
            cadence *= math.sqrt(1.0 + change.magnitude * (-1 if change.kind == "slower" else 1))
        for _ in range(days.sessions_per_day):
            start = float(rng.uniform(0.0, duration_s - window_s))
            rec = cut_recording(recording, start, start + window_s)
            if change.active(i) and change.kind in TRANSFERS:
                rec = transfer_load(rec, side=change.side, kind=TRANSFERS[change.kind], fraction=change.magnitude)
            import_recording(store, stretch_time(rec, 1.0 / cadence), patient=patient, day=day_label(i),
                             service=service)
    return outcome_from_store(store, patient)


def outcome_from_store(store: Store, patient: str) -> dict:
    """The patient's raised flags (kind, day index, metric, side) and valid-day indices, from the store."""
    first = FIRST_DAY
    raised = [(f["kind"], (date.fromisoformat(f["day"]) - first).days, f["metric"],
               f["evidence"].get("side")) for f in flag_store.flags(store, patient) if f["state"] == "raised"]
    table = daily_table(store, patient)
    valid = [(date.fromisoformat(d) - first).days for d, n in zip(table.index, table["strides_n"], strict=True)
             if n >= 20]
    heel = pd.to_numeric(table["heel_load_fraction"], errors="coerce") if "heel_load_fraction" in table else None
    return {"raised": sorted(raised, key=lambda r: r[1]), "valid_days": valid,
            "heel_share": float(heel.iloc[:10].median()) if heel is not None and len(heel) else None}
