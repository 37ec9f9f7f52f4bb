"""Simulated patient cohorts with ground truth, for validating :mod:`processing.detection`.

Each patient has their own gait (between-patient spread) and their own day-to-day
variability in free-living walking (each day's walk has its own cadence, stride
length, COP placement, heel loading and asymmetry, drawn around the patient's mean).
Every day is simulated as a short walk with :func:`simulator.simulate`, analysed with
:func:`processing.analytics.analyze`, and summarised into the daily metrics the
service stores (:func:`daily_metrics`). A change (:class:`Change`) starts on a given
day and may end on another (recovery).

Magnitudes (documented with their sources in docs/detection.md):

* between patients: cadence 105 +- 8 steps/min, stride length 1.25 +- 0.12 m,
  baseline lateral COP offset 0 +- 0.02 fw, heel offload 0..0.10, asymmetry 0..0.04,
  stride-to-stride CV 1.5..3.5 %;
* day to day (per patient, drawn uniformly): stride length CV 1.5..4 %, cadence CV
  1.0..2.5 % (correlation +0.5 with stride length: a faster day has both), lateral
  COP SD 0.005..0.015 fw, heel offload SD 0.01..0.03, asymmetry SD 0.005..0.015;
* 10 % of days have no walking at all (insoles not worn); each day's walk lasts
  30..60 s of straight walking.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace as dc_replace
from typing import Literal

import numpy as np
import pandas as pd

from insole_common.codec import Side
from insole_common.errors import ValidationError
from insole_common.recording import Recording
from processing.analytics import analyze
from processing.summaries import daily_metrics as service_daily_metrics
from simulator.changes import transfer_load
from simulator.params import SimulationParams
from simulator.simulation import simulate

ChangeKind = Literal["none", "shortened_stride", "lateral_shift", "heel_offloading", "limp", "slower", "faster",
                     "lateral_transfer", "heel_transfer"]


#: the load-transfer changes, applied to each day's simulated recording
TRANSFERS = {"lateral_transfer": "medial_to_lateral", "heel_transfer": "heel_to_forefoot"}


def daily_metrics(strides: pd.DataFrame) -> dict[str, float | int | None]:
    """One day's summary from its strides, exactly as the service stores it
    (:func:`processing.summaries.daily_metrics`), plus ``strides_n``."""
    out: dict[str, float | int | None] = {"strides_n": int(len(strides))}
    if len(strides):
        out.update(service_daily_metrics(strides))
    return out


@dataclass(frozen=True, kw_only=True)
class Change:
    """A compensation that starts on ``onset_day`` (and ends on ``end_day``, exclusive, if given)."""

    kind: ChangeKind = "none"
    #: shortened_stride: fraction (0.10 = 10 % shorter); lateral_shift: foot widths; heel_offloading:
    #: added heel offload fraction; limp: added symmetry index (fraction, e.g. 0.10); slower / faster: walking
    #: speed fraction (0.08: cadence and stride length each x sqrt(1 -+ 0.08), the walk ratio kept);
    #: lateral_transfer / heel_transfer: fraction of the medial / heel sensors' load moved to the lateral /
    #: forefoot sensors of foot ``side`` (:func:`simulator.changes.transfer_load`)
    magnitude: float = 0.0
    onset_day: int = 14
    end_day: int | None = None
    side: Side = "R"

    def active(self, day: int) -> bool:
        return self.kind != "none" and day >= self.onset_day and (self.end_day is None or day < self.end_day)


@dataclass(frozen=True, kw_only=True)
class PatientProfile:
    """One simulated patient's own gait and own day-to-day variability."""

    patient: str
    cadence_spm: float = 105.0
    stride_length_m: float = 1.25
    body_mass_kg: float = 75.0
    lateral_fw: float = 0.0
    heel_offload: float = 0.0
    #: signed symmetry index: > 0 means the right side is the affected (shorter, lighter) one
    asymmetry: float = 0.0
    variability_cv: float = 0.025
    stride_cv_day: float = 0.025
    cadence_cv_day: float = 0.018
    speed_corr: float = 0.5
    lateral_sd_day_fw: float = 0.01
    heel_sd_day: float = 0.02
    asymmetry_sd_day: float = 0.01
    missing_day_fraction: float = 0.10
    walk_s: tuple[float, float] = (30.0, 60.0)
    imu: bool = True
    #: share of days walked markedly slower or faster (half each): speed x (1 -+ speed_day_change), cadence and
    #: stride length each by its square root
    speed_day_fraction: float = 0.0
    speed_day_change: float = 0.10

    @classmethod
    def draw(cls, rng: np.random.Generator, patient: str, *, imu: bool = True) -> PatientProfile:
        """A patient from the cohort's between-patient distributions."""
        return cls(
            patient=patient,
            cadence_spm=float(np.clip(rng.normal(105.0, 8.0), 85.0, 125.0)),
            stride_length_m=float(np.clip(rng.normal(1.25, 0.12), 0.95, 1.55)),
            body_mass_kg=float(np.clip(rng.normal(78.0, 14.0), 50.0, 120.0)),
            lateral_fw=float(np.clip(rng.normal(0.0, 0.02), -0.05, 0.05)),
            heel_offload=float(rng.uniform(0.0, 0.10)),
            asymmetry=float(rng.uniform(-0.04, 0.04)),
            variability_cv=float(rng.uniform(0.015, 0.035)),
            stride_cv_day=float(rng.uniform(0.015, 0.04)),
            cadence_cv_day=float(rng.uniform(0.010, 0.025)),
            lateral_sd_day_fw=float(rng.uniform(0.005, 0.015)),
            heel_sd_day=float(rng.uniform(0.01, 0.03)),
            asymmetry_sd_day=float(rng.uniform(0.005, 0.015)),
            imu=imu,
        )


def day_params(profile: PatientProfile, change: Change, day: int, rng: np.random.Generator):
    """The :class:`simulator.SimulationParams` of one day's walk (``None`` for a day without walking)."""
    if rng.uniform() < profile.missing_day_fraction:
        return None
    e_sl = rng.normal()
    e_cad = profile.speed_corr * e_sl + math.sqrt(1.0 - profile.speed_corr ** 2) * rng.normal()
    stride = profile.stride_length_m * (1.0 + profile.stride_cv_day * e_sl)
    cadence = profile.cadence_spm * (1.0 + profile.cadence_cv_day * e_cad)
    lateral = profile.lateral_fw + profile.lateral_sd_day_fw * rng.normal()
    heel = profile.heel_offload + profile.heel_sd_day * rng.normal()
    asym = profile.asymmetry + profile.asymmetry_sd_day * rng.normal()
    walk_s = float(rng.uniform(*profile.walk_s))
    if profile.speed_day_fraction and rng.uniform() < profile.speed_day_fraction:
        f = math.sqrt(1.0 + profile.speed_day_change * (1 if rng.uniform() < 0.5 else -1))
        stride, cadence = stride * f, cadence * f
    if change.active(day) and change.kind in ("slower", "faster"):
        f = math.sqrt(1.0 + change.magnitude * (-1 if change.kind == "slower" else 1))
        stride, cadence = stride * f, cadence * f
    if change.active(day):
        if change.kind == "shortened_stride":
            stride *= 1.0 - change.magnitude
        elif change.kind == "lateral_shift":
            lateral += change.magnitude
        elif change.kind == "heel_offloading":
            heel += change.magnitude
        elif change.kind == "limp":
            asym += change.magnitude
    return SimulationParams(
        schedule=(("standing", 3.0), ("walking", walk_s), ("standing", 3.0)),
        cadence_spm=float(np.clip(cadence, 40.0, 180.0)),
        stride_length_m=float(np.clip(stride, 0.3, 2.2)),
        body_mass_kg=profile.body_mass_kg,
        lateral_shift_fw=float(np.clip(lateral, -0.15, 0.15)),
        heel_offload_fraction=float(np.clip(heel, 0.0, 0.9)),
        asymmetry=float(min(abs(asym), 0.4)),
        affected_side="R" if asym >= 0 else "L",
        variability_cv=profile.variability_cv,
        imu=profile.imu,
    )


def simulate_days(profile: PatientProfile, change: Change, *, n_days: int, seed: int) -> pd.DataFrame:
    """Daily metrics of one patient over days ``0 .. n_days-1`` (index ``day``; days without walking absent)."""
    rng = np.random.default_rng(seed)
    rows = {}
    for day in range(n_days):
        params = day_params(profile, change, day, rng)
        if params is None:
            continue
        sim = simulate(params, seed=int(rng.integers(2 ** 31)))
        recording = sim.recording
        if change.active(day) and change.kind in TRANSFERS:
            recording = transfer_load(recording, side=change.side, kind=TRANSFERS[change.kind],
                                      fraction=change.magnitude)
        rows[day] = daily_metrics(analyze(recording).strides)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "day"
    return frame


@dataclass(frozen=True, kw_only=True)
class CohortPatient:
    profile: PatientProfile
    change: Change
    arm: str
    seed: int
    n_days: int


def make_cohort(arms: dict[str, tuple[Change, int]], *, n_patients: int, seed: int = 0,
                imu: bool = True, speed_day_fraction: float = 0.0) -> list[CohortPatient]:
    """``arms``: name -> (change, days simulated). ``n_patients`` per arm, independent patients."""
    if n_patients < 1:
        raise ValidationError("n_patients must be >= 1", reason="bad_parameter")
    out = []
    for a, (name, (change, n_days)) in enumerate(arms.items()):
        for p, child in enumerate(np.random.SeedSequence([seed, a]).spawn(n_patients)):
            rng = np.random.default_rng(child)
            profile = dc_replace(PatientProfile.draw(rng, f"{name}-{p:04d}", imu=imu),
                                 speed_day_fraction=speed_day_fraction)
            out.append(CohortPatient(profile=profile, change=change, arm=name, seed=int(rng.integers(2 ** 31)),
                                     n_days=n_days))
    return out


def _simulate_one(patient: CohortPatient) -> pd.DataFrame:
    return simulate_days(patient.profile, patient.change, n_days=patient.n_days, seed=patient.seed)


def simulate_cohort(patients: list[CohortPatient], *, workers: int = 1) -> list[pd.DataFrame]:
    """Daily metrics of every patient (in order); ``workers`` > 1 uses that many processes."""
    if workers <= 1:
        return [_simulate_one(p) for p in patients]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_simulate_one, patients, chunksize=4))


__all__ = [
    "Change",
    "CohortPatient",
    "PatientProfile",
    "cut_recording",
    "daily_metrics",
    "day_params",
    "make_cohort",
    "replay_days",
    "simulate_cohort",
    "simulate_days",
]


# ---------------------------------------------------------------------------------------------
# real control walks replayed as repeated days

def cut_recording(recording, start_s: float, end_s: float):
    """The part of a recording from ``start_s`` to ``end_s`` (s from its first sample), both feet."""
    feet = {}
    for side, foot in recording.feet.items():
        i0 = max(0, int(round(start_s * foot.sample_rate_hz)))
        i1 = min(foot.n_samples, int(round(end_s * foot.sample_rate_hz)))
        if i1 - i0 < 2:
            raise ValidationError(f"cut {start_s}..{end_s} s leaves no samples", reason="bad_parameter")
        arrays = {name: (None if getattr(foot, name) is None else getattr(foot, name)[i0:i1])
                  for name in ("pressure", "total_force_n", "cop_ap", "cop_ml", "acc_g", "gyro_dps", "seq")}
        feet[side] = dc_replace(foot, t0_s=foot.t0_s + i0 / foot.sample_rate_hz, **arrays)
    return Recording(feet=feet, source_format=recording.source_format, meta=dict(recording.meta))


def replay_days(recording, *, n_days: int = 35, window_fraction: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """A real walk replayed as ``n_days`` days: each day is a window of ``window_fraction`` of the
    recording at a random offset, analysed on its own, so day-to-day differences are the walk's
    natural segment-to-segment variation (no change anywhere)."""
    if not 0.1 <= window_fraction <= 1.0:
        raise ValidationError("window_fraction must be 0.1..1", reason="bad_parameter")
    rng = np.random.default_rng(seed)
    duration_s = min(f.duration_s for f in recording.feet.values())
    window_s = window_fraction * duration_s
    rows = {}
    for day in range(n_days):
        start = float(rng.uniform(0.0, duration_s - window_s))
        rows[day] = daily_metrics(analyze(cut_recording(recording, start, start + window_s)).strides)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "day"
    return frame
