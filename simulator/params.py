"""Simulation settings (:class:`SimulationParams`) and the activity schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from insole_common.codec import SIDES, Side
from insole_common.errors import ValidationError
from insole_common.layouts import LAYOUTS
from simulator.consts import ACTIVITIES, STEPPING

#: default day-in-the-life cycle (activity, nominal seconds); durations are jittered by the seed
DEFAULT_CYCLE: tuple[tuple[str, float], ...] = (
    ("standing", 5.0), ("walking", 30.0), ("turning", 3.0), ("walking", 30.0), ("standing", 8.0),
    ("shuffling", 6.0), ("standing", 4.0), ("sitting", 25.0), ("standing", 5.0), ("walking", 45.0),
    ("turning", 3.0), ("walking", 20.0), ("standing", 6.0), ("sitting", 40.0),
)
DEFAULT_DURATION_S = 180.0
#: a run of stepping bouts (walking/turning/shuffling) must last this long: gait initiation plus a few steps
MIN_GAIT_SEQUENCE_S = 3.0

#: heel-pain compensation at full severity (``heel_pain = 1``; docs/simulator.md gives the evidence): walking speed
#: cut (cadence and stride length both fall, walk ratio kept), heel load cut on the painful foot, lateral shift of
#: its forefoot phase, weight and stance taken off it (symmetry index), and a COP that leaves the heel early
PAIN_SLOWING = 0.10
PAIN_HEEL_OFFLOAD = 0.20
PAIN_LATERAL_SHIFT_FW = 0.04
PAIN_ASYMMETRY = 0.06
#: day-to-day coefficient of variation of a person's walking speed at home (docs/simulator.md)
DAY_SPEED_CV = 0.06


@dataclass(frozen=True, kw_only=True)
class SimulationParams:
    """What to simulate. Every field is keyword-only and defaulted; units are in the names.

    ``schedule`` is a sequence of ``(activity, seconds)``; when it is None a realistic
    mix (stand, walk, turn, walk, stand, shuffle, sit, ...) filling ``duration_s`` is
    drawn from the seed. Give one of them, or both when they agree.
    """

    sample_rate_hz: float = 100.0
    duration_s: float | None = None
    schedule: tuple[tuple[str, float], ...] | None = None
    #: steps per minute (both feet) in straight walking at the person's usual speed
    cadence_spm: float = 105.0
    #: heel strike to heel strike of the same foot, straight walking at the person's usual speed
    stride_length_m: float = 1.30
    #: walking speed relative to the usual one (a slower or faster day): cadence and stride length both scale by
    #: its square root, which keeps the walk ratio (step length / cadence) constant (Sekiya & Nagasaki 1998)
    speed_factor: float = 1.0
    #: heel-pain compensation, 0 (none: a healthy walk) .. 1 (full; the PAIN_* constants), on ``affected_side``
    #: or on both feet (``heel_pain_bilateral``): slower (shorter strides, lower cadence), shorter rearfoot contact,
    #: heel impulse down, lateral-forefoot load up, load and stance taken off the painful foot
    heel_pain: float = 0.0
    heel_pain_bilateral: bool = False
    body_mass_kg: float = 70.0
    #: added to the medial-lateral COP of every stance (foot widths, lateral +)
    lateral_shift_fw: float = 0.0
    #: fraction by which heel-region load is cut in every stance sample; the load moves forward
    heel_offload_fraction: float = 0.0
    #: symmetry index (unaffected - affected) / mean, applied to stance time and to vertical force (heel pain adds
    #: to it, see :attr:`effective_asymmetry`)
    asymmetry: float = 0.0
    affected_side: Side = "R"
    #: coefficient of variation of stride time, stride length and peak force, stride to stride
    variability_cv: float = 0.02
    #: standard deviation of additive Gaussian noise per pressure sensor
    noise_kpa: float = 1.0
    #: fraction of notification blocks lost (per foot), in bursts
    packet_loss_fraction: float = 0.0
    #: mean length of a loss burst, in blocks
    packet_loss_burst_blocks: float = 2.0
    #: frames per BLE notification; packet loss drops whole blocks
    frames_per_block: int = 5
    #: rate of the right insole's clock relative to the left one (the left clock runs at true rate)
    clock_drift_ppm: float = 0.0
    #: right insole clock minus left insole clock at true t = 0
    clock_offset_s: float = 0.0
    imu: bool = True
    imu_acc_noise_g: float = 0.003
    imu_gyro_noise_dps: float = 0.15
    layout: str = "kc16"
    #: total heading change of one turning bout (positive = to the left)
    turn_angle_deg: float = 180.0

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValidationError:
            return ValidationError(f"SimulationParams: {msg}", reason="bad_parameter")

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise bad(f"{f.name} must be finite, got {v}")
        checks = [
            (1.0 <= self.sample_rate_hz <= 2000.0, "sample_rate_hz must be 1..2000"),
            (40.0 <= self.cadence_spm <= 180.0, "cadence_spm must be 40..180 steps/min"),
            (0.3 <= self.stride_length_m <= 2.2, "stride_length_m must be 0.3..2.2 m"),
            (20.0 <= self.body_mass_kg <= 250.0, "body_mass_kg must be 20..250 kg"),
            (abs(self.lateral_shift_fw) <= 0.15, "|lateral_shift_fw| must be <= 0.15 foot widths"),
            (0.0 <= self.heel_offload_fraction <= 0.9, "heel_offload_fraction must be 0..0.9"),
            (0.5 <= self.speed_factor <= 1.5, "speed_factor must be 0.5..1.5"),
            (0.0 <= self.heel_pain <= 1.0, "heel_pain must be 0..1"),
            (0.0 <= self.asymmetry <= 0.4, "asymmetry must be 0..0.4"),
            (self.affected_side in SIDES, "affected_side must be 'L' or 'R'"),
            (0.0 <= self.variability_cv <= 0.1, "variability_cv must be 0..0.1"),
            (self.noise_kpa >= 0.0, "noise_kpa must be >= 0"),
            (0.0 <= self.packet_loss_fraction < 0.9, "packet_loss_fraction must be 0..0.9"),
            (self.packet_loss_burst_blocks >= 1.0, "packet_loss_burst_blocks must be >= 1"),
            (1 <= self.frames_per_block <= 1000, "frames_per_block must be 1..1000"),
            (abs(self.clock_drift_ppm) <= 10_000, "|clock_drift_ppm| must be <= 10000"),
            (self.clock_offset_s > -29.0, "clock_offset_s must be > -29 s (device clocks never go negative)"),
            (self.imu_acc_noise_g >= 0 and self.imu_gyro_noise_dps >= 0, "IMU noise must be >= 0"),
            (self.layout in LAYOUTS, f"layout must be one of {sorted(LAYOUTS)}"),
            (abs(self.turn_angle_deg) <= 720, "|turn_angle_deg| must be <= 720"),
        ]
        for ok, msg in checks:
            if not ok:
                raise bad(msg)
        if self.duration_s is not None and not self.duration_s > 0:
            raise bad("duration_s must be > 0")
        if self.schedule is not None:
            sched = tuple((str(a), float(d)) for a, d in self.schedule)
            object.__setattr__(self, "schedule", sched)
            for act, dur in sched:
                if act not in ACTIVITIES:
                    raise bad(f"unknown activity {act!r}; expected one of {ACTIVITIES}")
                if not (math.isfinite(dur) and dur > 0):
                    raise bad(f"schedule duration of {act!r} must be > 0 s, got {dur}")
            if not sched:
                raise bad("schedule is empty")
            total = sum(d for _, d in sched)
            if self.duration_s is not None and abs(total - self.duration_s) > 1e-6:
                raise bad(f"schedule lasts {total} s but duration_s is {self.duration_s}")
            _check_gait_sequences(sched)

    @property
    def walking_speed_factor(self) -> float:
        """Walking speed relative to the usual one: the day's ``speed_factor`` and the slowing of heel pain."""
        return self.speed_factor * (1.0 - PAIN_SLOWING * self.heel_pain)

    @property
    def stride_time_s(self) -> float:
        """Stride time of straight walking at this speed (walk ratio kept: cadence ∝ √speed)."""
        return 120.0 / (self.cadence_spm * math.sqrt(self.walking_speed_factor))

    @property
    def walking_stride_length_m(self) -> float:
        """Stride length of straight walking at this speed (walk ratio kept: stride length ∝ √speed)."""
        return self.stride_length_m * math.sqrt(self.walking_speed_factor)

    @property
    def effective_asymmetry(self) -> float:
        """``asymmetry`` plus heel pain's off-loading of the painful foot (none when both feet hurt)."""
        return self.asymmetry + (0.0 if self.heel_pain_bilateral else PAIN_ASYMMETRY * self.heel_pain)

    def pain_on(self, side: Side) -> float:
        """Heel-pain severity on ``side``."""
        return self.heel_pain if self.heel_pain_bilateral or side == self.affected_side else 0.0

    def heel_offload_on(self, side: Side) -> float:
        """Fraction of the heel load moved forward on ``side``: ``heel_offload_fraction`` plus heel pain's."""
        return min(self.heel_offload_fraction + PAIN_HEEL_OFFLOAD * self.pain_on(side), 0.9)

    def lateral_shift_on(self, side: Side) -> tuple[float, float]:
        """Lateral COP shift of a stance on ``side``: throughout it, and added in its forefoot phase (heel pain)."""
        return self.lateral_shift_fw, PAIN_LATERAL_SHIFT_FW * self.pain_on(side)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["schedule"] = [list(x) for x in self.schedule] if self.schedule is not None else None
        return d


def day_speed_factors(n_days: int, rng: np.random.Generator, cv: float = DAY_SPEED_CV) -> np.ndarray:
    """Walking-speed factors of ``n_days`` days (log-normal around 1 with coefficient of variation ``cv``, clipped to
    the valid 0.5..1.5): pass one as ``speed_factor`` per simulated day."""
    sigma = math.sqrt(math.log1p(cv * cv))
    return np.clip(np.exp(rng.normal(-0.5 * sigma * sigma, sigma, size=n_days)), 0.5, 1.5)


def _check_gait_sequences(sched: tuple[tuple[str, float], ...]) -> None:
    run = 0.0
    for act, dur in [*sched, ("standing", 1.0)]:
        if act in STEPPING:
            run += dur
        else:
            if 0 < run < MIN_GAIT_SEQUENCE_S:
                raise ValidationError(
                    f"SimulationParams: a run of walking/turning/shuffling lasts {run:.2f} s; "
                    f"it needs at least {MIN_GAIT_SEQUENCE_S} s", reason="bad_parameter")
            run = 0.0


def resolve_schedule(params: SimulationParams, rng: np.random.Generator) -> list[tuple[float, float, str]]:
    """The bouts as ``(start_s, end_s, activity)``, contiguous from 0."""
    if params.schedule is not None:
        sched = list(params.schedule)
    else:
        total = params.duration_s if params.duration_s is not None else DEFAULT_DURATION_S
        sched = []
        t = 0.0
        i = 0
        while t < total - 1e-9:
            act, nominal = DEFAULT_CYCLE[i % len(DEFAULT_CYCLE)]
            dur = min(nominal * rng.uniform(0.7, 1.3), total - t)
            sched.append((act, dur))
            t += dur
            i += 1
        # a truncated tail that is too short to walk becomes standing
        while True:
            try:
                _check_gait_sequences(tuple(sched))
                break
            except ValidationError:
                for j in range(len(sched) - 1, -1, -1):
                    if sched[j][0] in STEPPING:
                        sched[j] = ("standing", sched[j][1])
                        break
    bouts: list[tuple[float, float, str]] = []
    t = 0.0
    for act, dur in sched:
        if bouts and bouts[-1][2] == act:  # merge repeats
            bouts[-1] = (bouts[-1][0], t + dur, act)
        else:
            bouts.append((t, t + dur, act))
        t += dur
    return bouts
