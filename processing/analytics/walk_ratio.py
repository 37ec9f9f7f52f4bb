"""Stride length without an IMU: the walk-ratio model.

The *walk ratio* is step length divided by cadence (m per step/min). In healthy adults it stays roughly
constant for one person across a wide range of speeds around the preferred one (Sekiya & Nagasaki 1998,
*Gait Posture* 7:95-101; also in community-dwelling older people, Bogen et al. 2018, *Gait Posture* 61:479),
at about 0.006 m/(steps/min) in adults: a person who slows down shortens the step and lowers the cadence in
proportion. Below about 1 m/s (cadence below about 98 steps/min) the constancy breaks and the walk ratio
rises (Murakami & Otaka 2017, *J Phys Ther Sci* 29:722), so the model is least accurate for very slow walkers.
So one number per patient gives a stride length for every day:

    stride_length_m = 2 * walk_ratio * cadence_steps_per_min

Where the number comes from (:class:`WalkRatio`):

* ``from_walk``: a calibration walk over a known distance (``kinetic calibrate RECORDING --distance-m 10``,
  the 10-metre walk test at comfortable speed): step length = distance / steps, divided by the walk's cadence;
* ``from_height``: step length at comfortable speed is about 0.41 x height and comfortable cadence about
  110 steps/min in adults, so walk ratio ~= 0.0037 x height (m). A coarse prior (one person's walk ratio
  varies about +-10 % around it); a calibration walk replaces it.

What this model cannot see: a stride shortened at an unchanged cadence (the walk ratio itself falling). Only
a foot-mounted IMU measures that (:func:`processing.analytics.strides.zupt_stride_length`). Heel pain
shortens the stride *and* lowers the cadence (Phillips & McClinton 2017; Cervera-Garvi et al. 2023), which
the model does see, through the cadence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from insole_common import metrics as C
from insole_common.errors import ValidationError

#: walk ratio per metre of body height (m per steps/min per m): 0.41 x height / 110 steps/min
WALK_RATIO_PER_HEIGHT = 0.41 / 110.0
#: plausible walk ratios of adults (m per steps/min); outside this a calibration walk is rejected
WALK_RATIO_RANGE = (0.0030, 0.0100)


def _bad(message: str) -> ValidationError:
    return ValidationError(message, reason="bad_calibration")


@dataclass(frozen=True)
class WalkRatio:
    """One patient's walk ratio (step length / cadence, m per steps/min) and where it came from."""

    m_per_spm: float
    #: "calibration" (a walk over a known distance) or "height"
    source: str
    #: what it was made from (distance, steps, cadence of the walk; or the height)
    detail: dict

    def __post_init__(self) -> None:
        lo, hi = WALK_RATIO_RANGE
        if not (math.isfinite(self.m_per_spm) and lo <= self.m_per_spm <= hi):
            raise _bad(f"walk ratio {self.m_per_spm:.5f} m/(steps/min) is outside the adult range {lo}..{hi}: "
                       f"check the distance, the step count or the height")

    def stride_length_m(self, cadence_spm):
        """Stride length (two steps) at the given cadence(s)."""
        return 2.0 * self.m_per_spm * np.asarray(cadence_spm, dtype=float)

    @classmethod
    def from_height(cls, height_m: float) -> WalkRatio:
        if not 1.0 <= height_m <= 2.3:
            raise _bad(f"height {height_m} m is not an adult's height in metres")
        return cls(WALK_RATIO_PER_HEIGHT * height_m, "height", {"height_m": height_m})

    @classmethod
    def from_walk(cls, strides: pd.DataFrame, *, distance_m: float, steps_n: int | None = None) -> WalkRatio:
        """From the strides of a walk over ``distance_m`` at comfortable speed.

        ``steps_n``: the steps counted by the clinician; default: the heel strikes of both feet minus one
        (the walk starts and ends standing, so the body covers the distance in the steps between the first
        and the last contact). The cadence is the median of the walk's strides."""
        if not distance_m > 0:
            raise _bad("the calibration distance must be positive")
        if strides.empty:
            raise _bad("the calibration walk has no strides")
        if steps_n is None:
            last = strides.sort_values(C.HEEL_STRIKE_S).groupby(C.SIDE).tail(1)
            steps_n = len(strides) + int(last[C.NEXT_HEEL_STRIKE_S].notna().sum()) - 1
        if steps_n < 4:
            raise _bad(f"the calibration walk has {steps_n} steps; at least 4 are needed")
        cadence = float(np.nanmedian(strides[C.CADENCE_STEPS_PER_MIN].to_numpy(float)))
        step_m = distance_m / steps_n
        return cls(step_m / cadence, "calibration",
                   {"distance_m": distance_m, "steps_n": int(steps_n), "cadence_spm": round(cadence, 2),
                    "step_length_m": round(step_m, 4)})
