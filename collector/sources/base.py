"""What every insole source yields, and the interface it implements (BLE, simulated, replay)."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from insole_common.codec import PressureUnit, Side


@dataclass(eq=False)
class DeviceFrames:
    """Consecutive frames as one device sent them, before clock alignment."""

    side: Side
    device_id: str
    #: device frame counter of the first frame, already unwrapped to a monotonic integer
    first_seq: int
    #: device clock at the first frame, microseconds, unwrapped
    device_time_us: int
    #: collector clock (Unix epoch, microseconds) when the notification arrived
    arrival_time_us: int
    pressure_raw: np.ndarray  # uint16 (n, channels)
    sample_rate_hz: float
    layout_id: int
    pressure_unit: PressureUnit
    pressure_scale: float
    pressure_offset: float = 0.0
    imu_raw: np.ndarray | None = None  # int16 (n, 6)
    acc_scale_g: float = 0.0
    gyro_scale_dps: float = 0.0
    battery_pct: float | None = None

    @property
    def n_frames(self) -> int:
        return int(self.pressure_raw.shape[0])


@dataclass
class SourceStatus:
    """What a source knows about its device right now (published as insole status)."""

    connected: bool = False
    battery_pct: float | None = None
    frames_received_n: int = 0
    frames_missing_n: int = 0
    bad_packets_n: int = 0
    bad_packet_reasons: dict[str, int] = field(default_factory=dict)
    #: gaps in the device's frame counter, as (first missing seq, count)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    #: notifications that repeated frames already received (dropped, not counted as bad)
    duplicate_packets_n: int = 0
    #: notifications that arrived after a later one had already been released (their frames stay a gap)
    late_packets_n: int = 0
    #: link outages on the collector clock (Unix us): (disconnected, reconnected or None while down)
    outages: list[tuple[int, int | None]] = field(default_factory=list)
    #: measured frame rate over the last status window (frames per second)
    rate_hz: float | None = None

    @property
    def loss_fraction(self) -> float:
        total = self.frames_received_n + self.frames_missing_n
        return self.frames_missing_n / total if total else 0.0


class InsoleSource(abc.ABC):
    """One insole. ``frames()`` yields until the source ends or is cancelled.

    Implementations reconnect on their own, record gaps in ``status.gaps`` and
    count malformed packets in ``status.bad_packets_n`` without stopping.
    """

    side: Side
    device_id: str

    def __init__(self) -> None:
        self.status = SourceStatus()
        #: called (no arguments) when ``status.connected`` changes; the collector publishes at once
        self.on_status_change: Callable[[], None] | None = None

    def _status_changed(self) -> None:
        if self.on_status_change is not None:
            self.on_status_change()

    @abc.abstractmethod
    def frames(self) -> AsyncIterator[DeviceFrames]:
        """Yield decoded frames in device order."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the device (disconnect)."""
