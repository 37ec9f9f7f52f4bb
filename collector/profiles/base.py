"""What a device profile is: GATT UUIDs plus pure functions ``bytes -> Packet``.

A profile decoder never keeps state: it turns one notification into a
:class:`Packet` whose counters are *as the device sent them* (still wrapping).
Unwrapping, de-duplication, re-ordering and gap accounting are done once, for
every profile, by :class:`collector.sources.ble.NotificationDecoder`.
Malformed input raises :class:`collector.errors.PacketError` with a ``reason``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from insole_common.codec import PressureUnit, Side


@dataclass(frozen=True, eq=False)
class Packet:
    """One decoded notification: ``n`` consecutive frames."""

    #: the profile's sequence counter as sent (wraps at ``Profile.seq_modulus``)
    seq_raw: int
    #: device clock at the first frame in the profile's ticks, as sent (wraps at ``Profile.time_modulus``)
    device_time_raw: int
    pressure_raw: np.ndarray  # uint16 (n, channels)
    sample_rate_hz: float
    imu_raw: np.ndarray | None = None  # int16 (n, 6): ax, ay, az, gx, gy, gz
    battery_pct: float | None = None

    @property
    def n_frames(self) -> int:
        return int(self.pressure_raw.shape[0])


@dataclass(frozen=True)
class DeviceInfo:
    """Static facts about one insole, read once per connection (calibration, side, identity)."""

    device_id: str | None = None
    side: Side | None = None
    layout_id: int = 0
    pressure_unit: PressureUnit = PressureUnit.ADC
    pressure_scale: float = 1.0
    pressure_offset: float = 0.0
    acc_scale_g: float = 0.0
    gyro_scale_dps: float = 0.0
    sample_rate_hz: float | None = None
    battery_pct: float | None = None


class Profile(abc.ABC):
    """A device profile: where the data lives in GATT and how its bytes decode."""

    #: short name used in config files and on the command line
    name: str
    #: primary service advertised by the insole (scan filter)
    service_uuid: str
    #: characteristic that notifies sensor packets
    data_char_uuid: str
    #: characteristic read once after connecting (device info / calibration), or None
    info_char_uuid: str | None = None
    #: the sequence counter wraps at this value
    seq_modulus: int
    #: frames per step of the sequence counter (1 if it counts frames, n if it counts packets)
    seq_step_frames: int = 1
    #: the device clock wraps at this many ticks
    time_modulus: int
    #: microseconds per device clock tick
    tick_us: float

    @abc.abstractmethod
    def decode(self, data: bytes | bytearray | memoryview) -> Packet:
        """Decode one notification. Raises PacketError (with ``reason``) on malformed input."""

    def decode_info(self, data: bytes | bytearray | memoryview) -> DeviceInfo:
        """Decode the info characteristic. Profiles without one return defaults."""
        return DeviceInfo()

    def default_info(self) -> DeviceInfo:
        """Calibration to assume when the device offers none."""
        return DeviceInfo()
