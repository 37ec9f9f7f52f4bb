"""In-memory model of a bilateral insole recording, shared by readers, simulator and analytics.

No I/O here: ``processing.readers`` turns files into these objects and
``simulator`` builds them. Samples sit on a uniform grid
(``t_s[i] = t0_s + i / sample_rate_hz``); a sample that never arrived is a row
of NaN, never zero force, so gaps stay visible to the analytics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from insole_common.codec import Side
from insole_common.errors import ValidationError
from insole_common.layouts import SensorLayout

#: unit suffixes used in column names, by pressure unit label
UNIT_SUFFIX = {"kPa": "kpa", "N": "n", "N/cm^2": "ncm2", "adc": "adc"}
ACC_COLUMNS = ("acc_x_g", "acc_y_g", "acc_z_g")
GYRO_COLUMNS = ("gyr_x_dps", "gyr_y_dps", "gyr_z_dps")


@dataclass(eq=False)
class FootRecording:
    """One insole's samples on a uniform time grid.

    IMU axes are one right-handed frame on both feet: x anterior (toe-ward), y to the
    subject's left, z up. Acceleration in g includes gravity (z = +1 g flat and still).
    """

    side: Side
    sample_rate_hz: float
    t0_s: float
    #: (n, n_channels) pressure or force in ``pressure_unit``; NaN rows = missing samples
    pressure: np.ndarray
    pressure_unit: str
    layout: SensorLayout | None = None
    channel_names: tuple[str, ...] = ()
    #: total force under the foot in newtons, when the device or dataset provides it
    total_force_n: np.ndarray | None = None
    #: vendor centre of pressure in the foot frame (foot lengths / foot widths, lateral +)
    cop_ap: np.ndarray | None = None
    cop_ml: np.ndarray | None = None
    acc_g: np.ndarray | None = None
    gyro_dps: np.ndarray | None = None
    seq: np.ndarray | None = None
    device_id: str | None = None

    def __post_init__(self) -> None:
        self.pressure = np.asarray(self.pressure, dtype=np.float64)
        if self.pressure.ndim == 1:
            self.pressure = self.pressure[:, None]
        if self.pressure.ndim != 2:
            raise ValidationError(f"{self.side}: pressure must be (samples, channels), got {self.pressure.shape}")
        if not (np.isfinite(self.sample_rate_hz) and self.sample_rate_hz > 0):
            raise ValidationError(f"{self.side}: sample rate must be a positive number, got {self.sample_rate_hz}")
        n, ch = self.pressure.shape
        if self.layout is not None and self.layout.n_channels != ch:
            raise ValidationError(f"{self.side}: layout {self.layout.name} has {self.layout.n_channels} channels, "
                                  f"data has {ch}")
        if not self.channel_names:
            self.channel_names = self.layout.channels if self.layout else tuple(f"ch{i + 1}" for i in range(ch))
        for name in ("total_force_n", "cop_ap", "cop_ml", "seq"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValidationError(f"{self.side}: {name} has {len(v)} samples, pressure has {n}")
        for name in ("acc_g", "gyro_dps"):
            v = getattr(self, name)
            if v is not None and np.shape(v) != (n, 3):
                raise ValidationError(f"{self.side}: {name} must be ({n}, 3), got {np.shape(v)}")

    @property
    def n_samples(self) -> int:
        return int(self.pressure.shape[0])

    @property
    def t_s(self) -> np.ndarray:
        return self.t0_s + np.arange(self.n_samples) / self.sample_rate_hz

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    @property
    def has_imu(self) -> bool:
        return self.acc_g is not None and self.gyro_dps is not None

    @property
    def missing(self) -> np.ndarray:
        """True where the sample never arrived."""
        return np.isnan(self.pressure).all(axis=1)

    def pressure_columns(self) -> list[str]:
        suffix = UNIT_SUFFIX.get(self.pressure_unit, "raw")
        return [f"{c}_{suffix}" for c in self.channel_names]


@dataclass(eq=False)
class Recording:
    """Both feet of one recording plus metadata (format, subject pseudonym, units)."""

    feet: dict[Side, FootRecording]
    source_format: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.feet:
            raise ValidationError("a recording needs at least one foot")
        for side, foot in self.feet.items():
            if side != foot.side:
                raise ValidationError(f"foot stored under {side!r} says it is {foot.side!r}")

    @property
    def sample_rate_hz(self) -> float:
        return next(iter(self.feet.values())).sample_rate_hz
