"""Every malformed payload gets a typed CodecError with a reason; the byte layout matches docs/wire-format.md."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from insole_common.codec import (
    HEADER_SIZE,
    Batch,
    PressureUnit,
    decode_batch,
    encode_batch,
    quantize,
    split_payloads,
)
from insole_common.errors import ChecksumError, CodecError


def make_batch(n: int = 4, ch: int = 16, imu: bool = True) -> Batch:
    rng = np.random.default_rng(1)
    return Batch(
        device_id="kc-0001",
        side="R",
        sample_rate_hz=100.0,
        first_seq=1234,
        device_time_us=987_654_321,
        collector_time_us=1_700_000_000_000_000,
        pressure_raw=rng.integers(0, 4000, (n, ch)).astype(np.uint16),
        layout_id=1,
        pressure_unit=PressureUnit.KPA,
        pressure_scale=0.1,
        imu_raw=rng.integers(-4000, 4000, (n, 6)).astype(np.int16) if imu else None,
        acc_scale_g=1 / 4096,
        gyro_scale_dps=0.07,
    )


def resign(body: bytes) -> bytes:
    """Replace the CRC trailer so that a test reaches the check behind it."""
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))


def test_documented_byte_offsets() -> None:
    b = make_batch(n=2, ch=3, imu=False)
    raw = encode_batch(b)
    assert raw[0:2] == b"KC" and raw[2] == 1 and raw[3] == 0 and raw[4] == 1  # magic, version, flags, side R
    assert raw[5] == 1 and raw[6] == 3 and raw[7] == 1  # layout kc16, channels, unit kPa
    assert struct.unpack_from("<H", raw, 8)[0] == 2
    assert raw[10] == len("kc-0001") and raw[11] == 0
    assert struct.unpack_from("<I", raw, 12)[0] == 100_000  # millihertz
    assert struct.unpack_from("<Q", raw, 16)[0] == 1234
    assert struct.unpack_from("<Q", raw, 24)[0] == 987_654_321
    assert struct.unpack_from("<q", raw, 32)[0] == 1_700_000_000_000_000
    assert np.float32(struct.unpack_from("<f", raw, 40)[0]) == np.float32(0.1)
    assert raw[HEADER_SIZE:HEADER_SIZE + 7] == b"kc-0001"
    first = struct.unpack_from("<3H", raw, HEADER_SIZE + 7)
    assert list(first) == b.pressure_raw[0].tolist()
    assert len(raw) == HEADER_SIZE + 7 + 2 * 2 * 3 + 4
    assert struct.unpack_from("<I", raw, len(raw) - 4)[0] == zlib.crc32(raw[:-4])


def test_physical_values_and_times() -> None:
    b = make_batch()
    d = decode_batch(encode_batch(b))
    np.testing.assert_allclose(d.pressure, b.pressure_raw * np.float32(0.1), rtol=1e-6)
    np.testing.assert_allclose(np.diff(d.times_s), 0.01, atol=1e-6)  # epoch seconds: ~0.2 us resolution
    assert d.seqs.tolist() == [1234, 1235, 1236, 1237] and d.last_seq == 1237
    assert d.acc_g.shape == (4, 3) and d.gyro_dps.shape == (4, 3)


@pytest.mark.parametrize("cut", [0, 1, 10, HEADER_SIZE, HEADER_SIZE + 5, -1])
def test_truncated(cut: int) -> None:
    raw = encode_batch(make_batch())
    with pytest.raises(CodecError) as err:
        decode_batch(raw[:cut])
    assert err.value.reason == "truncated"


def test_payloads_end_to_end_split_where_their_headers_say() -> None:
    """The store keeps a run of batches as their payloads laid end to end; each comes back byte for byte."""
    parts = [encode_batch(make_batch(n=n, ch=ch, imu=imu)) for n, ch, imu in ((4, 16, True), (1, 8, False), (50, 16,
                                                                                                             True))]
    assert split_payloads(b"".join(parts)) == parts
    assert split_payloads(parts[1]) == parts[1:2] and split_payloads(b"") == []
    for cut in (1, 5, HEADER_SIZE + 3, len(parts[2]) - 1):  # the last one cut short, in its header or its body
        with pytest.raises(CodecError, match="offset") as err:
            split_payloads(b"".join(parts)[:-cut])
        assert err.value.reason == "truncated"


def test_trailing_garbage_is_inconsistent_length() -> None:
    raw = encode_batch(make_batch())
    with pytest.raises(CodecError, match="implies") as err:
        decode_batch(resign(raw + b"\0\0\0\0"))
    assert err.value.reason == "inconsistent_lengths"


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (0, b"XX", "bad_magic"),
        (2, b"\x02", "bad_version"),
        (3, b"\x80", "bad_flags"),
        (4, b"\x05", "bad_side"),
        (7, b"\x09", "bad_unit"),
        (6, b"\x00", "absurd_count"),
        (6, b"\xff", "absurd_count"),
        (8, struct.pack("<H", 0), "absurd_count"),
        (8, struct.pack("<H", 60000), "absurd_count"),
        (12, struct.pack("<I", 0), "absurd_rate"),
        (10, b"\x00", "bad_device_id"),
    ],
)
def test_header_fields(offset: int, value: bytes, reason: str) -> None:
    raw = bytearray(encode_batch(make_batch()))
    raw[offset : offset + len(value)] = value
    with pytest.raises(CodecError) as err:
        decode_batch(resign(bytes(raw)))
    assert err.value.reason == reason, str(err.value)


def test_imu_flag_without_imu_block_is_a_length_error() -> None:
    raw = bytearray(encode_batch(make_batch(imu=False)))
    raw[3] = 1
    with pytest.raises(CodecError) as err:
        decode_batch(resign(bytes(raw)))
    assert err.value.reason == "truncated"


@pytest.mark.parametrize("offset", [40, 44, 48, 52])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_calibration(offset: int, value: float) -> None:
    raw = bytearray(encode_batch(make_batch()))
    raw[offset : offset + 4] = struct.pack("<f", value)
    with pytest.raises(CodecError) as err:
        decode_batch(resign(bytes(raw)))
    assert err.value.reason == "non_finite"


def test_corrupted_payload_is_a_checksum_error() -> None:
    raw = bytearray(encode_batch(make_batch()))
    raw[HEADER_SIZE + 20] ^= 0xFF
    with pytest.raises(ChecksumError) as err:
        decode_batch(bytes(raw))
    assert err.value.reason == "bad_checksum" and "CRC-32" in str(err.value)


def test_invalid_utf8_device_id() -> None:
    raw = bytearray(encode_batch(make_batch()))
    raw[HEADER_SIZE] = 0xFF
    with pytest.raises(CodecError) as err:
        decode_batch(resign(bytes(raw)))
    assert err.value.reason == "bad_device_id"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (dict(side="X"), "bad_side"),
        (dict(sample_rate_hz=float("nan")), "non_finite"),
        (dict(pressure_scale=0.0), "bad_calibration"),
        (dict(pressure_raw=np.zeros((0, 16), np.uint16)), "absurd_count"),
        (dict(pressure_raw=np.zeros((4, 16), np.float32)), "bad_dtype"),
        (dict(imu_raw=np.zeros((3, 6), np.int16)), "inconsistent_lengths"),
        (dict(device_id=""), "bad_device_id"),
        (dict(sample_rate_hz=5000.0), "absurd_rate"),
    ],
)
def test_encoder_refuses_invalid_batches(change: dict, reason: str) -> None:
    fields = make_batch().__dict__ | change
    with pytest.raises(CodecError) as err:
        encode_batch(Batch(**fields))
    assert err.value.reason == reason


def test_quantize_rounds_and_clips() -> None:
    counts = quantize(np.array([-5.0, 0.04, 0.06, 1e9]), 0.1)
    assert counts.tolist() == [0, 0, 1, 65535]
