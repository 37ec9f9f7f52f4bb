"""Streaming analysis: feed per-foot chunks as they arrive, get completed strides back.

The stream runs the very same per-foot engine as :func:`processing.analytics.analyze`
(``FootEngine``): levels are computed per block aligned to the first sample,
the contact state machine restarts at the last unfinished stride, and only
results that later data can no longer change are emitted. So the final table
equals the batch table on the same data, however the data is chunked.
Latency: a stride is emitted about ``2 * block_s`` + 1 s (11 s) after it ends.
Double support, stride length from a calibration, bout labels and the summary
need both feet and are filled in by :meth:`StreamingAnalyzer.finish`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from insole_common.errors import ValidationError
from insole_common.layouts import SensorLayout
from processing.analytics.events import LoadEventDetector
from processing.analytics.pipeline import Calibration, FootEngine, GaitResult, finalize


class StreamingAnalyzer:
    """Incremental gait analysis of a live bilateral stream.

    ``sides`` maps "L"/"R" to ``dict(sampling_rate_hz=..., t0_s=..., layout=..., pressure_unit=..., n_channels=...)``
    (``layout`` may be None). Chunks of one foot must be contiguous on its sample grid (missing samples as NaN rows).
    """

    def __init__(self, sides: dict[str, dict], *, calibration: Calibration | None = None,
                 detector: LoadEventDetector | None = None) -> None:
        if not sides:
            raise ValidationError("a stream needs at least one foot", reason="no_feet")
        self.calibration = calibration
        self._engines = {
            side: FootEngine(side, sampling_rate_hz=cfg["sampling_rate_hz"], t0_s=cfg.get("t0_s", 0.0),
                             layout=cfg.get("layout"), pressure_unit=cfg.get("pressure_unit", "kPa"),
                             n_channels=cfg.get("n_channels") or (cfg["layout"].n_channels if cfg.get("layout") else 1),
                             detector=detector)
            for side, cfg in sides.items()
        }
        self._next_t0: dict[str, float] = {}
        self.result_: GaitResult | None = None

    @classmethod
    def like(cls, recording, **kwargs) -> "StreamingAnalyzer":
        """A stream configured like ``recording`` (same sides, rates, layouts, units)."""
        return cls({s: dict(sampling_rate_hz=f.sample_rate_hz, t0_s=f.t0_s, layout=f.layout,
                            pressure_unit=f.pressure_unit, n_channels=f.pressure.shape[1])
                    for s, f in recording.feet.items()}, **kwargs)

    def feed(self, side: str, t0_s: float, pressure: np.ndarray, *, total_force_n=None, acc_g=None, gyro_dps=None,
             cop_ap=None, cop_ml=None) -> pd.DataFrame:
        """Add a chunk for one foot starting at ``t0_s``; returns the strides completed by it (may be empty)."""
        e = self._engines.get(side)
        if e is None:
            raise ValidationError(f"unknown side {side!r}; stream has {sorted(self._engines)}", reason="bad_side")
        expected = self._next_t0.get(side, e.t0_s)
        if abs(t0_s - expected) > 0.5 / e.fs:
            raise ValidationError(f"{side}: chunk starts at {t0_s:.4f} s, expected {expected:.4f} s "
                                  "(fill missing samples with NaN rows)", reason="discontinuous")
        n = np.asarray(pressure).shape[0]
        self._next_t0[side] = expected + n / e.fs
        return e.feed(pressure, total_force_n=total_force_n, acc_g=acc_g, gyro_dps=gyro_dps, cop_ap=cop_ap, cop_ml=cop_ml)

    def finish(self) -> GaitResult:
        """End of stream: flush the last strides and return the full result (equal to ``analyze``)."""
        for e in self._engines.values():
            if not e.finished:
                e.finish()
        self.result_ = finalize(self._engines, calibration=self.calibration, meta={"source_format": "stream"})
        return self.result_
