"""Gait analytics core: numpy/pandas only, no I/O.

Public API
----------
``analyze(recording, *, calibration=None, detector=None) -> GaitResult``
    Whole-recording analysis of a :class:`insole_common.recording.Recording`.
``GaitResult``
    ``.strides`` (DataFrame, one row per stride; columns in :mod:`insole_common.metrics`,
    times in seconds on the recording's time base, side ``"L"``/``"R"``), ``.bouts``
    (start_s, end_s, activity in walking/standing/sitting/shuffling/turning, n_strides) and
    ``.summary`` (JSON-ready dict: means per side, cadence, symmetry indices, ``data_quality``, ``flags``).
``Calibration(stride_length_m, stride_time_s, exponent=1.0)`` / ``Calibration.from_walk(strides, distance_m=10.0)``
    stride length for insoles without an IMU (calibration walk, e.g. a 10-metre walk test).
``LoadEventDetector(*, ...)`` with ``.detect(load, *, sampling_rate_hz, t0_s=0.0) -> self`` and ``.events_``
    the heel-strike / toe-off detector on its own; pass one to ``analyze(..., detector=...)`` to change settings.
    ``LoadEventDetector(**OPENGO_EVENT_LEVELS)`` reports load-insole events at Moticon OpenGo's definition
    (6 % / 12 % of the loaded level) instead of at contact (2 %, the default).
``symmetry_index(left, right)``
    Robinson symmetry index in percent.

Unusable input raises :class:`insole_common.errors.ValidationError` (with ``reason``);
usable-but-poor input yields flags in ``summary["flags"]`` (``no_walking``, ``few_strides``,
``dropped_samples_L``, ``saturated_channel_R``, ...). Methods: docs/analytics.md.
"""

from processing.analytics.events import OPENGO_EVENT_LEVELS, LoadEventDetector
from processing.analytics.pipeline import Calibration, GaitResult, analyze
from processing.analytics.summary import symmetry_index

__all__ = ["OPENGO_EVENT_LEVELS", "Calibration", "GaitResult", "LoadEventDetector", "analyze", "symmetry_index"]
