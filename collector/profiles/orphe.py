"""ORPHE INSOLE: the SENSOR_VALUES notifications of ORPHE's insole module.

Source: ORPHE's open SDKs, which are the published form of its sensor
specification: ``parseInsoleSensorValues`` in ``src/ORPHE-INSOLE.js`` of
https://github.com/Orphe-OSS/ORPHE-INSOLE.js (v1.2.1, 2026) and
``SensorValuesData`` / ``DeviceInformation`` in ``orphe_insole.py`` of
https://github.com/Orphe-OSS/ORPHE-INSOLE.py. docs/ble-profile.md lists what
was verified there and what is our inference.

Every notification is exactly 104 bytes, big-endian::

    off size type  field
      0    1 u8    header         55 = pressure + IMU at 200 Hz (4 samples, 24 bytes each)
                                  54 = the same layout from the device FIFO (lossless mode)
                                  56 = quaternion + IMU + pressure at 100 Hz (2 samples, 32 bytes each)
                                  50 = quaternion + IMU without pressure (rejected: no pressure)
      1    2 u16   serial         packet serial number, wraps at 65536
      3    1 u8    hours          device wall clock of the packet
      4    1 u8    minutes
      5    1 u8    seconds
      6    2 u16   milliseconds
      8  ...       samples        slot k at 8 + k * stride; the SDK numbers slot k as packet_number
                                  n - 1 - k, i.e. the slot at the highest offset is the oldest sample

    header 55/54 slot (24 bytes): gyro x y z i16, acc x y z i16, pressure 6 x u16
    header 56 slot (32 bytes):    quat w x y z i16 (Q14), gyro x y z, acc x y z, pressure 6 x u16

Scales (DEVICE_INFORMATION characteristic, byte 0 battery %, byte 1 mount
position bit 0 = right foot, byte 8 acc range index into 2/4/8/16 g, byte 9
gyro range index into 250/500/1000/2000 dps): acc g per count = range / 32768,
gyro deg/s per count = range * 0.000035 (LSM6DSOX sensitivity, as the SDK
v1.2.1 applies it). Pressure is passed on as raw counts (unit ADC): the SDK
does not publish a calibration to kPa.
"""

from __future__ import annotations

import struct

import numpy as np

from collector.errors import PacketError
from collector.profiles.base import DeviceInfo, Packet, Profile
from insole_common.codec import PressureUnit

SERVICE_UUID = "db1b7aca-cda5-4453-a49b-33a53d3f0833"  # ORPHE_OTHER_SERVICE
DATA_CHAR_UUID = "f3f9c7ce-46ee-4205-89ac-abe64e626c0f"  # ORPHE_SENSOR_VALUES
INFO_SERVICE_UUID = "01a9d6b5-ff6e-444a-b266-0be75e85c064"  # ORPHE_INFORMATION
INFO_CHAR_UUID = "24354f22-1c46-430e-a4ab-a1eeabbcdfc0"  # ORPHE_DEVICE_INFORMATION

PACKET_SIZE = 104
HEADER = struct.Struct(">BHBBBH")
HEADER_SIZE = HEADER.size  # 8
MS_PER_DAY = 86_400_000
ACC_RANGES_G = (2, 4, 8, 16)
GYRO_RANGES_DPS = (250, 500, 1000, 2000)
GYRO_DPS_PER_LSB_PER_RANGE = 0.000035
N_CHANNELS = 6

# header -> (samples per packet, slot stride, sample rate, offset of gyro in slot)
MODES: dict[int, tuple[int, int, float, int]] = {
    55: (4, 24, 200.0, 0),
    54: (4, 24, 200.0, 0),
    56: (2, 32, 100.0, 8),
}
assert HEADER_SIZE == 8


def _slot_dtype(stride: int, gyro_offset: int) -> np.dtype:
    # gyro(3) acc(3) pressure(6), big-endian, at gyro_offset within the slot
    return np.dtype({
        "names": ["gyro", "acc", "p"],
        "formats": [(">i2", (3,)), (">i2", (3,)), (">u2", (N_CHANNELS,))],
        "offsets": [gyro_offset, gyro_offset + 6, gyro_offset + 12],
        "itemsize": stride,
    })


_DTYPES = {h: _slot_dtype(stride, g) for h, (_, stride, _, g) in MODES.items()}


def encode_packet(
    header: int,
    serial: int,
    time_ms_of_day: int,
    pressure_raw: np.ndarray,
    imu_raw: np.ndarray,
    *,
    quat_raw: np.ndarray | None = None,
) -> bytes:
    """Build one 104-byte SENSOR_VALUES notification, samples in time order (for the emulator).

    ``imu_raw`` is (n, 6) int16 in our order (ax ay az gx gy gz); ORPHE puts gyro before acc.
    """
    n, stride, _, _g = MODES[header]
    if pressure_raw.shape != (n, N_CHANNELS) or imu_raw.shape != (n, 6):
        raise ValueError(f"header {header} carries {n} samples of {N_CHANNELS} channels + 6 IMU axes")
    ms = int(time_ms_of_day) % MS_PER_DAY
    buf = bytearray(PACKET_SIZE)
    HEADER.pack_into(buf, 0, header, serial % 65536, ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000)
    slots = np.zeros(n, dtype=_DTYPES[header])
    order = np.arange(n)[::-1]  # slot k holds sample n-1-k: the highest offset is the oldest
    slots["p"][order] = pressure_raw
    slots["acc"][order] = imu_raw[:, :3]
    slots["gyro"][order] = imu_raw[:, 3:]
    raw = slots.tobytes()
    buf[HEADER_SIZE : HEADER_SIZE + len(raw)] = raw
    if header == 56 and quat_raw is not None:
        for k, q in zip(order, quat_raw, strict=True):
            struct.pack_into(">4h", buf, HEADER_SIZE + stride * k, *q)
    return bytes(buf)


def encode_info(*, battery_pct: int, right: bool, acc_range_index: int = 3, gyro_range_index: int = 3) -> bytes:
    info = bytearray(20)
    info[0] = battery_pct
    info[1] = 1 if right else 0
    info[8] = acc_range_index
    info[9] = gyro_range_index
    return bytes(info)


class OrpheInsoleProfile(Profile):
    """ORPHE INSOLE SENSOR_VALUES (6 pressure channels + IMU, 104-byte big-endian notifications)."""

    name = "orphe"
    service_uuid = SERVICE_UUID
    data_char_uuid = DATA_CHAR_UUID
    info_char_uuid = INFO_CHAR_UUID
    seq_modulus = 1 << 16
    seq_step_frames = 0  # depends on the mode: set per packet (see frames_per_serial)
    time_modulus = MS_PER_DAY
    tick_us = 1000.0

    def decode(self, data: bytes | bytearray | memoryview) -> Packet:
        buf = bytes(data)
        if len(buf) != PACKET_SIZE:
            raise PacketError(
                f"ORPHE INSOLE notifications are {PACKET_SIZE} bytes; got {len(buf)}",
                reason="truncated" if len(buf) < PACKET_SIZE else "too_long",
            )
        header, serial, hh, mm, ss, ms = HEADER.unpack_from(buf)
        mode = MODES.get(header)
        if mode is None:
            reason = "unsupported_mode" if header == 50 else "bad_header"
            raise PacketError(f"ORPHE header {header} carries no pressure samples this collector can use",
                              reason=reason)
        if hh > 23 or mm > 59 or ss > 59 or ms > 999:
            raise PacketError(f"device time {hh:02d}:{mm:02d}:{ss:02d}.{ms:03d} is not a time of day",
                              reason="bad_time")
        n, _, rate_hz, _ = mode
        slots = np.frombuffer(buf, dtype=_DTYPES[header], count=n, offset=HEADER_SIZE)[::-1]  # oldest first
        pressure = slots["p"].astype(np.uint16)
        imu = np.concatenate([slots["acc"], slots["gyro"]], axis=1).astype(np.int16)
        time_ms = ((hh * 60 + mm) * 60 + ss) * 1000 + ms
        return Packet(seq_raw=serial, device_time_raw=time_ms, pressure_raw=pressure, sample_rate_hz=rate_hz,
                      imu_raw=imu)

    @staticmethod
    def frames_per_serial(packet: Packet) -> int:
        return packet.n_frames

    def decode_info(self, data: bytes | bytearray | memoryview) -> DeviceInfo:
        buf = bytes(data)
        if len(buf) < 10:
            raise PacketError(f"DEVICE_INFORMATION is {len(buf)} bytes; it needs at least 10", reason="truncated")
        battery, mount = buf[0], buf[1]
        acc_i, gyro_i = buf[8], buf[9]
        if acc_i > 3 or gyro_i > 3:
            raise PacketError(f"range indices acc={acc_i} gyro={gyro_i} outside 0..3", reason="bad_range")
        return DeviceInfo(
            side="R" if mount & 1 else "L", layout_id=3, pressure_unit=PressureUnit.ADC, pressure_scale=1.0,
            acc_scale_g=ACC_RANGES_G[acc_i] / 32768,
            gyro_scale_dps=GYRO_RANGES_DPS[gyro_i] * GYRO_DPS_PER_LSB_PER_RANGE,
            battery_pct=float(min(battery, 100)),
        )

    def default_info(self) -> DeviceInfo:
        return DeviceInfo(layout_id=3, pressure_unit=PressureUnit.ADC, pressure_scale=1.0,
                          acc_scale_g=16 / 32768, gyro_scale_dps=2000 * GYRO_DPS_PER_LSB_PER_RANGE)
