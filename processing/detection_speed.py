"""Walking speed in compensation detection: the stride series (shortened stride or slowing) and the comparison of
every other watched metric with the baseline at the day's cadence.

**Stride series** (:func:`stride_series`), the first that can be had:

1. ``stride_length_m`` measured (foot-mounted IMU, zero-velocity-update integration): kind ``shortened_stride``;
2. ``stride_length_m`` from the walk-ratio model (:class:`processing.analytics.walk_ratio.WalkRatio`, the
   patient's calibration walk or height) times the day's cadence: kind ``shortened_stride``;
3. otherwise ``cadence_steps_per_min`` alone: kind ``slowing``. Cadence and stride time are one signal (a day's
   median cadence is 120 / its median stride time), so stride time is evidence, not a second test.

Each is watched DOWN only (heel pain walks slower with shorter strides: Phillips & McClinton 2017;
Cervera-Garvi et al. 2023): walking faster can never raise these flags. None of them is adjusted for cadence,
because they *are* walking speed.

**Matched cadence** (:func:`cadence_adjusted`): every other series is compared at the day's cadence. On the
baseline days the series is regressed on the day's cadence, ``y = a + b (c - c_base)``, with the slope shrunk
toward 0 (ridge weight ``slope_prior_spm2``): ``b = Sxy / (Sxx + lambda)``. Each day's value is replaced by its
residual at the baseline cadence, ``y - b (c - c_base)`` (the cadence difference capped at ``slope_max_spm``);
the baseline's SD is then the residual SD. A patient whose baseline shows no relation keeps their values.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from insole_common import metrics as C
from processing.analytics.walk_ratio import WalkRatio
from processing.detection_run import Series
from processing.detection_settings import DetectionSettings

#: the series kinds that measure walking speed themselves (never adjusted for cadence)
SPEED_KINDS = ("shortened_stride", "slowing")
#: ``evidence.stride_length`` of a stride length measured by the foot-mounted IMU
MEASURED = "measured (IMU)"


def stride_series(derived: pd.DataFrame, usable, walk_ratio: WalkRatio | None) -> tuple[Series | None, str]:
    """The stride series of the table (see the module docstring) and, when there is none, why.

    ``usable(col)``: the column has enough baseline days. With a walk ratio and no measured stride length, the
    modelled stride length replaces the (empty) ``stride_length_m`` column of ``derived``."""
    corr = (C.CADENCE_STEPS_PER_MIN, C.STRIDE_TIME_S)
    down = C.DOWN  # the catalogue's direction of stride length and cadence under heel pain
    if usable(C.STRIDE_LENGTH_M):
        return Series("shortened_stride", C.STRIDE_LENGTH_M, C.STRIDE_LENGTH_M, down, corroborating=corr,
                      extra={"stride_length": MEASURED}), ""
    if walk_ratio is not None and C.CADENCE_STEPS_PER_MIN in derived:
        derived[C.STRIDE_LENGTH_M] = walk_ratio.stride_length_m(derived[C.CADENCE_STEPS_PER_MIN].to_numpy(float))
        if usable(C.STRIDE_LENGTH_M):
            extra = {"stride_length": f"walk-ratio model: 2 x {walk_ratio.m_per_spm:.5f} m/(steps/min) x cadence",
                     "walk_ratio": {"m_per_spm": walk_ratio.m_per_spm, "source": walk_ratio.source,
                                    **walk_ratio.detail}}
            return Series("shortened_stride", C.STRIDE_LENGTH_M, C.STRIDE_LENGTH_M, down, corroborating=corr,
                          extra=extra), ""
    if usable(C.CADENCE_STEPS_PER_MIN):
        return slowing_series("none (no IMU, no calibration): cadence watched"), ""
    return None, "neither stride length nor cadence in the baseline"


def slowing_series(stride_length: str = "measured (IMU), watched as shortened_stride") -> Series:
    """Cadence watched down (kind ``slowing``; stride time is evidence). Without a stride length it is the stride
    series; with a measured one (IMU) it is watched as well, because the IMU's stride length and the cadence are
    two measurements of walking speed and heel pain lowers both (docs/detection.md, "Small shifts")."""
    return Series("slowing", C.CADENCE_STEPS_PER_MIN, C.CADENCE_STEPS_PER_MIN, C.DOWN,
                  corroborating=(C.STRIDE_TIME_S,), extra={"stride_length": stride_length})


def cadence_adjusted(series: Series, derived: pd.DataFrame, base_mask: np.ndarray,
                     settings: DetectionSettings) -> tuple[Series, np.ndarray | None]:
    """``series`` with its cadence adjustment in ``extra`` and the adjusted values (None: not adjusted)."""
    if (not settings.speed_adjust or series.kind in SPEED_KINDS or C.CADENCE_STEPS_PER_MIN not in derived
            or series.metric not in derived):
        return series, None
    y = derived[series.metric].to_numpy(float)
    c = derived[C.CADENCE_STEPS_PER_MIN].to_numpy(float)
    sel = base_mask & np.isfinite(y) & np.isfinite(c)
    if sel.sum() < settings.min_baseline_days:
        return series, None
    c_base = float(c[sel].mean())
    dc = c[sel] - c_base
    slope = float((dc * (y[sel] - y[sel].mean())).sum() / ((dc ** 2).sum() + settings.slope_prior_spm2))
    off = np.clip(np.nan_to_num(c - c_base), -settings.slope_max_spm, settings.slope_max_spm)
    adjusted = y - slope * off
    extra = {**series.extra, "cadence_adjustment": {"slope_per_spm": slope, "baseline_cadence_spm": c_base,
                                                    "values_are": "residuals at the baseline cadence"}}
    return dataclasses.replace(series, extra=extra), adjusted
