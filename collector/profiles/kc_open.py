"""The Kinetic Chain open insole GATT profile, version 1 (docs/ble-profile.md).

Designed to be easy to implement on an ESP32 or nRF52: little-endian (native
on both), fixed-size frames, a CRC-16/CCITT-FALSE that every SDK ships, and a
frame counter (not a packet counter) so the collector counts lost frames
exactly. Notification layout::

    off  size type  field
      0     1 u8    version          1
      1     1 u8    flags            bit 0: IMU block per frame; bit 1: battery byte valid; bits 2-7 = 0
      2     2 u16   seq              frame counter of frame 0, wraps at 65536
      4     4 u32   device_time_us   device clock at frame 0, microseconds, wraps at 2^32 (71.6 min)
      8     1 u8    n_frames         frames in this notification, >= 1
      9     1 u8    n_channels       pressure channels per frame (16 for kc16)
     10     2 u16   sample_rate_hz   nominal rate, 1..2000
     12     1 u8    battery_pct      0..100 (only if flag bit 1)
     13     1 u8    reserved         0
     14   F*n       frames           per frame: n_channels x u16 pressure, then (IMU) 6 x i16 ax ay az gx gy gz
    end     2 u16   crc16            CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of every byte before it

Frame size F = 2 * n_channels (+ 12 with IMU); a notification holds
``(ATT_MTU - 3 - 16) // F`` frames: 5 frames of kc16+IMU at ATT MTU 247.

The info characteristic (read once after connecting)::

      0     1 u8    version          1
      1     1 u8    side             0 = left, 1 = right
      2     1 u8    layout_id        insole_common.layouts wire id (kc16 = 1)
      3     1 u8    pressure_unit    insole_common.codec.PressureUnit
      4     4 f32   pressure_scale   physical = raw * scale + offset
      8     4 f32   pressure_offset
     12     4 f32   acc_scale_g      g per IMU count
     16     4 f32   gyro_scale_dps   deg/s per IMU count
     20     2 u16   sample_rate_hz   nominal
     22     L utf-8 device_id        rest of the value, 1..64 bytes
"""

from __future__ import annotations

import binascii
import struct

import numpy as np

from collector.errors import PacketChecksumError, PacketError
from collector.profiles.base import DeviceInfo, Packet, Profile
from insole_common.codec import PressureUnit, pressure_unit_of_code, side_of_code

VERSION = 1
SERVICE_UUID = "4b430001-6b69-6e65-7469-632d63686169"
DATA_CHAR_UUID = "4b430002-6b69-6e65-7469-632d63686169"
INFO_CHAR_UUID = "4b430003-6b69-6e65-7469-632d63686169"

HEADER = struct.Struct("<BBHIBBHBB")
HEADER_SIZE = HEADER.size  # 14
CRC_SIZE = 2
OVERHEAD = HEADER_SIZE + CRC_SIZE
FLAG_IMU = 0x01
FLAG_BATTERY = 0x02
IMU_AXES = 6
MAX_CHANNELS = 64
INFO = struct.Struct("<BBBBffffH")
INFO_SIZE = INFO.size  # 22
ATT_HEADER_BYTES = 3

assert HEADER_SIZE == 14 and INFO_SIZE == 22


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    return binascii.crc_hqx(data, 0xFFFF)


def frame_size_bytes(n_channels: int, has_imu: bool) -> int:
    return 2 * n_channels + (2 * IMU_AXES if has_imu else 0)


def frames_per_notification(att_mtu: int, n_channels: int = 16, has_imu: bool = True) -> int:
    """How many frames fit one notification at this ATT MTU (0 if not even one fits)."""
    return max(0, (att_mtu - ATT_HEADER_BYTES - OVERHEAD) // frame_size_bytes(n_channels, has_imu))


def _frame_dtype(n_channels: int, has_imu: bool) -> np.dtype:
    fields = [("p", "<u2", (n_channels,))]
    if has_imu:
        fields.append(("imu", "<i2", (IMU_AXES,)))
    return np.dtype(fields)


_DTYPES: dict[tuple[int, bool], np.dtype] = {}


def encode_packet(
    seq: int,
    device_time_us: int,
    pressure_raw: np.ndarray,
    *,
    sample_rate_hz: int,
    imu_raw: np.ndarray | None = None,
    battery_pct: int | None = None,
) -> bytes:
    """Build one notification (the reference for firmware authors; the emulated insole uses it)."""
    n, ch = pressure_raw.shape
    flags = (FLAG_IMU if imu_raw is not None else 0) | (FLAG_BATTERY if battery_pct is not None else 0)
    header = HEADER.pack(VERSION, flags, seq % 65536, device_time_us % (1 << 32), n, ch, int(sample_rate_hz),
                         0 if battery_pct is None else int(battery_pct), 0)
    frames = np.empty(n, dtype=_frame_dtype(ch, imu_raw is not None))
    frames["p"] = pressure_raw
    if imu_raw is not None:
        frames["imu"] = imu_raw
    body = header + frames.tobytes()
    return body + struct.pack("<H", crc16(body))


def encode_info(info: DeviceInfo) -> bytes:
    side = 0 if info.side in (None, "L") else 1
    dev = (info.device_id or "").encode("utf-8")
    return INFO.pack(VERSION, side, info.layout_id, int(info.pressure_unit), info.pressure_scale, info.pressure_offset,
                     info.acc_scale_g, info.gyro_scale_dps, int(info.sample_rate_hz or 0)) + dev


class KcOpenProfile(Profile):
    """Kinetic Chain open insole profile v1 (16 pressure channels, optional IMU, CRC-16)."""

    name = "kc16"
    service_uuid = SERVICE_UUID
    data_char_uuid = DATA_CHAR_UUID
    info_char_uuid = INFO_CHAR_UUID
    seq_modulus = 1 << 16
    seq_step_frames = 1
    time_modulus = 1 << 32
    tick_us = 1.0

    def decode(self, data: bytes | bytearray | memoryview) -> Packet:
        buf = bytes(data)
        size = len(buf)
        if size < OVERHEAD:
            raise PacketError(f"notification is {size} bytes; a packet needs at least {OVERHEAD}", reason="truncated")
        version, flags, seq, dev_us, n, ch, rate_hz, battery, reserved = HEADER.unpack_from(buf)
        if version != VERSION:
            raise PacketError(f"profile version {version}; this collector reads {VERSION}", reason="bad_version")
        if flags & ~(FLAG_IMU | FLAG_BATTERY) or reserved:
            raise PacketError(f"reserved bits set (flags=0x{flags:02x}, reserved={reserved})", reason="bad_flags")
        if n == 0 or not 1 <= ch <= MAX_CHANNELS or not 1 <= rate_hz <= 2000:
            raise PacketError(f"absurd header: {n} frames, {ch} channels, {rate_hz} Hz", reason="absurd_count")
        has_imu = bool(flags & FLAG_IMU)
        expected = OVERHEAD + n * frame_size_bytes(ch, has_imu)
        if size != expected:
            raise PacketError(
                f"notification is {size} bytes but its header ({n} frames x {ch} channels, "
                f"imu={'yes' if has_imu else 'no'}) implies {expected}",
                reason="truncated" if size < expected else "too_long",
            )
        (crc,) = struct.unpack_from("<H", buf, size - CRC_SIZE)
        actual = crc16(memoryview(buf)[: size - CRC_SIZE])
        if crc != actual:
            raise PacketChecksumError(crc, actual)
        key = (ch, has_imu)
        dtype = _DTYPES.get(key)
        if dtype is None:
            dtype = _DTYPES[key] = _frame_dtype(ch, has_imu)
        frames = np.frombuffer(buf, dtype=dtype, count=n, offset=HEADER_SIZE)
        pressure = frames["p"].astype(np.uint16)
        imu = frames["imu"].astype(np.int16) if has_imu else None
        if battery > 100 and flags & FLAG_BATTERY:
            raise PacketError(f"battery {battery}% outside 0..100", reason="bad_battery")
        return Packet(
            seq_raw=seq,
            device_time_raw=dev_us,
            pressure_raw=pressure,
            sample_rate_hz=float(rate_hz),
            imu_raw=imu,
            battery_pct=float(battery) if flags & FLAG_BATTERY else None,
        )

    def decode_info(self, data: bytes | bytearray | memoryview) -> DeviceInfo:
        buf = bytes(data)
        if len(buf) < INFO_SIZE + 1:
            raise PacketError(f"info value is {len(buf)} bytes; it needs at least {INFO_SIZE + 1}", reason="truncated")
        version, side, layout_id, unit, p_scale, p_offset, acc, gyro, rate_hz = INFO.unpack_from(buf)
        if version != VERSION:
            raise PacketError(f"info version {version}; this collector reads {VERSION}", reason="bad_version")
        side_lr = side_of_code(side, PacketError)
        unit_enum = pressure_unit_of_code(unit, PacketError)
        try:
            device_id = buf[INFO_SIZE:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PacketError(f"device id is not UTF-8: {exc}", reason="bad_device_id") from exc
        return DeviceInfo(
            device_id=device_id, side=side_lr, layout_id=layout_id, pressure_unit=unit_enum,
            pressure_scale=p_scale, pressure_offset=p_offset, acc_scale_g=acc, gyro_scale_dps=gyro,
            sample_rate_hz=float(rate_hz) or None,
        )

    def default_info(self) -> DeviceInfo:
        return DeviceInfo(layout_id=1, pressure_unit=PressureUnit.KPA, pressure_scale=0.1)
