"""Binary batch payload, wire format version 1 (documented in docs/wire-format.md).

Decoded arrays are read-only views over the payload (copy them to modify). The wire is
little-endian; so is every platform this runs on, which the module checks at import.

A batch carries N consecutive frames from one insole. All integers are
little-endian. Layout::

    off size type  field
      0    2 bytes magic            b"KC"
      2    1 u8    version          1
      3    1 u8    flags            bit 0: IMU block present; bits 1-7 must be 0
      4    1 u8    side             0 = left, 1 = right
      5    1 u8    layout_id        sensor layout (insole_common.layouts); 0 = custom
      6    1 u8    n_channels       pressure channels per frame, 1..64
      7    1 u8    pressure_unit    0 = ADC counts, 1 = kPa, 2 = N, 3 = N/cm^2
      8    2 u16   n_frames         frames in this batch, 1..1000
     10    1 u8    device_id_len    1..64
     11    1 u8    reserved         must be 0
     12    4 u32   sample_rate_mhz  nominal sample rate in millihertz, 1 Hz..2 kHz
     16    8 u64   first_seq        sequence number of frame 0 (frame i has first_seq + i)
     24    8 u64   device_time_us   device clock at frame 0, microseconds
     32    8 i64   collector_time_us  frame 0 on the collector's time base (Unix epoch, us)
     40    4 f32   pressure_scale   physical = raw * scale + offset; finite, > 0
     44    4 f32   pressure_offset  finite
     48    4 f32   acc_scale_g      g per IMU count (0 without IMU); finite, >= 0
     52    4 f32   gyro_scale_dps   deg/s per IMU count (0 without IMU); finite, >= 0
     56    L utf-8 device_id
   56+L  2NC u16   pressure         n_frames x n_channels, frame-major
    ...  12N i16   imu              n_frames x (ax, ay, az, gx, gy, gz), only with flag bit 0
    end    4 u32   crc32            zlib CRC-32 of every byte before it

Decoding never trusts a length it has not checked, and every failure raises
:class:`~insole_common.errors.CodecError` with a ``reason`` label.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, NamedTuple

import numpy as np

from insole_common.errors import ChecksumError, CodecError, InsoleError

Side = Literal["L", "R"]
SIDES: tuple[Side, Side] = ("L", "R")

MAGIC = b"KC"
WIRE_VERSION = 1
HEADER = struct.Struct("<2sBBBBBBHBBIQQqffff")
HEADER_SIZE = HEADER.size  # 56
CRC_SIZE = 4
IMU_AXES = 6

MAX_CHANNELS = 64
MAX_FRAMES = 1000
MAX_DEVICE_ID_BYTES = 64
MIN_RATE_MHZ = 1_000
MAX_RATE_MHZ = 2_000_000
FLAG_IMU = 0x01

assert HEADER_SIZE == 56
if np.little_endian is False:  # pragma: no cover - decoding relies on native little-endian views
    raise ImportError("insole_common.codec needs a little-endian platform")


class PressureUnit(IntEnum):
    """Unit of ``raw * pressure_scale + pressure_offset``."""

    ADC = 0
    KPA = 1
    NEWTON = 2
    N_PER_CM2 = 3

    @property
    def label(self) -> str:
        return {0: "adc", 1: "kPa", 2: "N", 3: "N/cm^2"}[int(self)]


@dataclass(frozen=True, eq=False)
class Batch:
    """Consecutive frames from one insole, as carried by one MQTT message."""

    device_id: str
    side: Side
    sample_rate_hz: float
    first_seq: int
    device_time_us: int
    collector_time_us: int
    pressure_raw: np.ndarray  # uint16, (n_frames, n_channels)
    layout_id: int = 0
    pressure_unit: PressureUnit = PressureUnit.KPA
    pressure_scale: float = 1.0
    pressure_offset: float = 0.0
    imu_raw: np.ndarray | None = None  # int16, (n_frames, 6)
    acc_scale_g: float = 0.0
    gyro_scale_dps: float = 0.0

    @property
    def n_frames(self) -> int:
        return int(self.pressure_raw.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.pressure_raw.shape[1])

    @property
    def has_imu(self) -> bool:
        return self.imu_raw is not None

    @property
    def seqs(self) -> np.ndarray:
        """Sequence number of every frame (uint64)."""
        return np.arange(self.n_frames, dtype=np.uint64) + np.uint64(self.first_seq)

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.n_frames - 1

    @property
    def times_s(self) -> np.ndarray:
        """Frame times on the collector time base, seconds since the Unix epoch."""
        return self.collector_time_us / 1e6 + np.arange(self.n_frames) / self.sample_rate_hz

    @property
    def pressure(self) -> np.ndarray:
        """Pressure in ``pressure_unit`` as float64, (n_frames, n_channels)."""
        return self.pressure_raw.astype(np.float64) * self.pressure_scale + self.pressure_offset

    @property
    def acc_g(self) -> np.ndarray | None:
        if self.imu_raw is None:
            return None
        return self.imu_raw[:, :3].astype(np.float64) * self.acc_scale_g

    @property
    def gyro_dps(self) -> np.ndarray | None:
        if self.imu_raw is None:
            return None
        return self.imu_raw[:, 3:].astype(np.float64) * self.gyro_scale_dps

    def same_content(self, other: Batch) -> bool:
        """True when both batches would encode to the same bytes."""
        return encode_batch(self) == encode_batch(other)


def quantize(values: np.ndarray, scale: float, offset: float = 0.0, *, dtype=np.uint16) -> np.ndarray:
    """Physical values -> integer counts for the wire (rounded, clipped to the type)."""
    info = np.iinfo(dtype)
    counts = np.rint((np.asarray(values, dtype=np.float64) - offset) / scale)
    return np.clip(counts, info.min, info.max).astype(dtype)


def _check_batch(batch: Batch) -> tuple[int, bytes]:
    """Validate a batch for encoding; return (flags, device_id bytes)."""
    if batch.side not in SIDES:
        raise CodecError(f"side must be 'L' or 'R', got {batch.side!r}", reason="bad_side")
    p = batch.pressure_raw
    if not isinstance(p, np.ndarray) or p.ndim != 2:
        raise CodecError("pressure_raw must be a 2-D array (frames x channels)", reason="bad_shape")
    n, ch = p.shape
    if not 1 <= n <= MAX_FRAMES:
        raise CodecError(f"n_frames {n} outside 1..{MAX_FRAMES}", reason="absurd_count")
    if not 1 <= ch <= MAX_CHANNELS:
        raise CodecError(f"n_channels {ch} outside 1..{MAX_CHANNELS}", reason="absurd_count")
    if p.dtype != np.uint16:
        raise CodecError(f"pressure_raw must be uint16, got {p.dtype}", reason="bad_dtype")
    flags = 0
    if batch.imu_raw is not None:
        imu = batch.imu_raw
        if imu.dtype != np.int16 or imu.shape != (n, IMU_AXES):
            raise CodecError(
                f"imu_raw must be int16 of shape ({n}, {IMU_AXES}), got {imu.dtype} {imu.shape}",
                reason="inconsistent_lengths",
            )
        flags |= FLAG_IMU
    dev = batch.device_id.encode("utf-8")
    if not 1 <= len(dev) <= MAX_DEVICE_ID_BYTES:
        raise CodecError(f"device_id must be 1..{MAX_DEVICE_ID_BYTES} UTF-8 bytes", reason="bad_device_id")
    _check_floats(batch.sample_rate_hz, batch.pressure_scale, batch.pressure_offset, batch.acc_scale_g,
                  batch.gyro_scale_dps)
    rate_mhz = round(batch.sample_rate_hz * 1000)
    if not MIN_RATE_MHZ <= rate_mhz <= MAX_RATE_MHZ:
        raise CodecError(f"sample rate {batch.sample_rate_hz} Hz outside 1..2000 Hz", reason="absurd_rate")
    if not 0 <= batch.first_seq < 2**64 - n:
        raise CodecError(f"first_seq {batch.first_seq} out of range", reason="bad_seq")
    if not 0 <= batch.device_time_us < 2**64:
        raise CodecError("device_time_us out of range", reason="bad_time")
    if not -(2**63) <= batch.collector_time_us < 2**63:
        raise CodecError("collector_time_us out of range", reason="bad_time")
    if not 0 <= batch.layout_id <= 255:
        raise CodecError("layout_id must fit one byte", reason="bad_layout")
    return flags, dev


def _check_floats(rate_hz: float, scale: float, offset: float, acc: float, gyro: float) -> None:
    for name, v in (("sample_rate_hz", rate_hz), ("pressure_scale", scale), ("pressure_offset", offset),
                    ("acc_scale_g", acc), ("gyro_scale_dps", gyro)):
        if not math.isfinite(v):
            raise CodecError(f"{name} is not finite ({v})", reason="non_finite")
    if scale <= 0:
        raise CodecError(f"pressure_scale must be > 0, got {scale}", reason="bad_calibration")
    if acc < 0 or gyro < 0:
        raise CodecError("IMU scales must be >= 0", reason="bad_calibration")


def encode_batch(batch: Batch) -> bytes:
    """Serialise a batch to wire format v1. Raises CodecError on an invalid batch."""
    flags, dev = _check_batch(batch)
    n, ch = batch.pressure_raw.shape
    header = HEADER.pack(
        MAGIC, WIRE_VERSION, flags, SIDES.index(batch.side), batch.layout_id, ch, int(batch.pressure_unit),
        n, len(dev), 0, round(batch.sample_rate_hz * 1000), batch.first_seq, batch.device_time_us,
        batch.collector_time_us, batch.pressure_scale, batch.pressure_offset, batch.acc_scale_g,
        batch.gyro_scale_dps,
    )
    parts = [header, dev, batch.pressure_raw.astype("<u2", copy=False).tobytes()]
    if batch.imu_raw is not None:
        parts.append(batch.imu_raw.astype("<i2", copy=False).tobytes())
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def pressure_counts_block(payloads: list[bytes]) -> np.ndarray:
    """Raw pressure counts of several batches with the same header layout, as one ``(k, n_frames, n_channels)``
    uint16 array (one copy).

    For the ingest hot path: every payload must already be known valid and shaped like the first (same
    frame and channel counts, device id length and flags), as checked by :func:`decode_batch` on an earlier
    batch of the same stream and a header comparison; this function checks the sizes only.
    """
    size = len(payloads[0])
    (_magic, _v, _flags, _side, _layout, ch, _unit, n, dev_len, *_rest) = HEADER.unpack_from(payloads[0])
    if any(len(p) != size for p in payloads):
        raise CodecError("pressure_counts_block needs payloads of one size", reason="inconsistent_lengths")
    off = HEADER_SIZE + dev_len
    rows = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(len(payloads), size)
    return np.ascontiguousarray(rows[:, off : off + 2 * n * ch]).view("<u2").reshape(len(payloads), n, ch)


#: where the header's per-batch counters lie: first_seq and collector_time_us (device_time_us between them is
#: skipped); every other header byte stays the same along one stream
_COUNTERS = struct.Struct("<Q8xq")
_COUNTERS_OFFSET = 16
_SCALES_OFFSET = 40
_DEVICE_ID_LEN_OFFSET = 10
assert (struct.calcsize("<2sBBBBBBH"), struct.calcsize("<2sBBBBBBHBBI"), _COUNTERS_OFFSET + 24) == (
    _DEVICE_ID_LEN_OFFSET, _COUNTERS_OFFSET, _SCALES_OFFSET)


class HeaderPeek(NamedTuple):
    """What :func:`peek_header` reads of a payload without decoding it."""

    #: the bytes of every header field but the sequence number and the two clocks, then the device id: equal
    #: for consecutive batches of one stream (same device, layout, rate, unit, scales, frame count)
    stream: bytes
    first_seq: int
    collector_time_us: int


def peek_header(payload: bytes) -> HeaderPeek:
    """The stream identity, sequence number and collector time of a payload, for the ingest hot path: nothing
    is checked (a payload whose ``stream`` equals that of a batch :func:`decode_batch` accepted, at the same
    length and with a good CRC, is valid). The payload must be at least ``HEADER_SIZE`` bytes long."""
    first_seq, collector_time_us = _COUNTERS.unpack_from(payload, _COUNTERS_OFFSET)
    stream = payload[:_COUNTERS_OFFSET] + payload[_SCALES_OFFSET : HEADER_SIZE + payload[_DEVICE_ID_LEN_OFFSET]]
    return _new_tuple(HeaderPeek, (stream, first_seq, collector_time_us))  # (cheaper than HeaderPeek(...))


_new_tuple = tuple.__new__


def _payload_size(flags: int, ch: int, n: int, dev_len: int) -> int:
    """Bytes of a wire payload whose header holds these fields."""
    return HEADER_SIZE + dev_len + 2 * n * ch + (2 * IMU_AXES * n if flags & FLAG_IMU else 0) + CRC_SIZE


def split_payloads(buf: bytes | bytearray | memoryview) -> list[bytes]:
    """The wire payloads laid end to end in ``buf`` (as the store keeps a run of consecutive batches), each
    cut where its own header says it ends; not otherwise checked (:func:`decode_batch` does that). Raises
    CodecError when the last one is cut short."""
    view = memoryview(buf)
    out, off, size = [], 0, len(view)
    while off < size:
        if size - off < HEADER_SIZE + CRC_SIZE:
            raise CodecError(f"{size - off} bytes left at offset {off}; a batch needs at least "
                             f"{HEADER_SIZE + CRC_SIZE}", reason="truncated")
        h = HEADER.unpack_from(view, off)
        end = off + _payload_size(h[2], h[5], h[7], h[8])
        if end > size:
            raise CodecError(f"the batch at offset {off} needs {end - off} bytes, {size - off} are left",
                             reason="truncated")
        out.append(bytes(view[off:end]))
        off = end
    return out


def side_of_code(code: int, error: type[InsoleError] = CodecError) -> Side:
    """The side byte of the wire format and of the open profile's info value: 0 left, 1 right."""
    if code > 1:
        raise error(f"side code {code} is neither 0 (left) nor 1 (right)", reason="bad_side")
    return SIDES[code]


def pressure_unit_of_code(code: int, error: type[InsoleError] = CodecError) -> PressureUnit:
    """The :class:`PressureUnit` of a unit byte; ``error`` (reason ``bad_unit``) for an unknown code."""
    try:
        return PressureUnit(code)
    except ValueError:
        raise error(f"unknown pressure unit code {code}", reason="bad_unit") from None


def decode_batch(payload: bytes | bytearray | memoryview) -> Batch:
    """Parse wire format v1. Raises CodecError (with ``reason``) on anything malformed."""
    buf = bytes(payload)
    if len(buf) < HEADER_SIZE + CRC_SIZE:
        raise CodecError(
            f"payload is {len(buf)} bytes; a batch needs at least {HEADER_SIZE + CRC_SIZE}", reason="truncated"
        )
    (magic, version, flags, side_code, layout_id, ch, unit, n, dev_len, reserved, rate_mhz, first_seq,
     device_time_us, collector_time_us, p_scale, p_offset, acc_scale, gyro_scale) = HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise CodecError(f"bad magic {magic!r}; expected {MAGIC!r}", reason="bad_magic")
    if version != WIRE_VERSION:
        raise CodecError(f"unsupported wire version {version}; this build reads {WIRE_VERSION}", reason="bad_version")
    if flags & ~FLAG_IMU or reserved:
        raise CodecError(f"reserved bits set (flags=0x{flags:02x}, reserved={reserved})", reason="bad_flags")
    side = side_of_code(side_code)
    unit_enum = pressure_unit_of_code(unit)
    if not 1 <= ch <= MAX_CHANNELS:
        raise CodecError(f"n_channels {ch} outside 1..{MAX_CHANNELS}", reason="absurd_count")
    if not 1 <= n <= MAX_FRAMES:
        raise CodecError(f"n_frames {n} outside 1..{MAX_FRAMES}", reason="absurd_count")
    if not 1 <= dev_len <= MAX_DEVICE_ID_BYTES:
        raise CodecError(f"device_id_len {dev_len} outside 1..{MAX_DEVICE_ID_BYTES}", reason="bad_device_id")
    if not MIN_RATE_MHZ <= rate_mhz <= MAX_RATE_MHZ:
        raise CodecError(f"sample rate {rate_mhz / 1000} Hz outside 1..2000 Hz", reason="absurd_rate")
    has_imu = bool(flags & FLAG_IMU)
    expected = _payload_size(flags, ch, n, dev_len)
    if len(buf) != expected:
        raise CodecError(
            f"payload is {len(buf)} bytes but its header ({n} frames x {ch} channels, "
            f"imu={'yes' if has_imu else 'no'}, device id {dev_len} bytes) implies {expected}",
            reason="truncated" if len(buf) < expected else "inconsistent_lengths",
        )
    (crc,) = struct.unpack_from("<I", buf, len(buf) - CRC_SIZE)
    actual = zlib.crc32(memoryview(buf)[: len(buf) - CRC_SIZE])
    if crc != actual:
        raise ChecksumError(crc, actual)
    _check_floats(rate_mhz / 1000, p_scale, p_offset, acc_scale, gyro_scale)
    if first_seq > 2**64 - 1 - n:
        raise CodecError(f"first_seq {first_seq} would overflow within the batch", reason="bad_seq")
    off = HEADER_SIZE
    try:
        device_id = buf[off : off + dev_len].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(f"device_id is not UTF-8: {exc}", reason="bad_device_id") from exc
    off += dev_len
    # read-only views over the (immutable) payload: no copy on the ingest path
    pressure = np.frombuffer(buf, dtype=np.uint16, count=n * ch, offset=off).reshape(n, ch)
    off += 2 * n * ch
    imu = None
    if has_imu:
        imu = np.frombuffer(buf, dtype=np.int16, count=n * IMU_AXES, offset=off).reshape(n, IMU_AXES)
    return Batch(
        device_id=device_id,
        side=side,
        sample_rate_hz=rate_mhz / 1000,
        first_seq=first_seq,
        device_time_us=device_time_us,
        collector_time_us=collector_time_us,
        pressure_raw=pressure,
        layout_id=layout_id,
        pressure_unit=unit_enum,
        pressure_scale=p_scale,
        pressure_offset=p_offset,
        imu_raw=imu,
        acc_scale_g=acc_scale,
        gyro_scale_dps=gyro_scale,
    )
