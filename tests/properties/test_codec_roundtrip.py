"""Hypothesis round trips of the wire format: decode(encode(b)) == b, and mutations never crash."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from insole_common.codec import MAX_CHANNELS, Batch, PressureUnit, decode_batch, encode_batch
from insole_common.errors import CodecError

f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
pos_f32 = st.floats(min_value=2.0**-20, max_value=2.0**20, width=32)
nonneg_f32 = st.floats(min_value=0.0, max_value=2.0**20, width=32)


@st.composite
def batches(draw) -> Batch:
    n = draw(st.integers(1, 60))
    ch = draw(st.integers(1, MAX_CHANNELS))
    with_imu = draw(st.booleans())
    return Batch(
        device_id=draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=16)),
        side=draw(st.sampled_from(["L", "R"])),
        sample_rate_hz=draw(st.integers(1_000, 2_000_000)) / 1000,
        first_seq=draw(st.integers(0, 2**63)),
        device_time_us=draw(st.integers(0, 2**64 - 1)),
        collector_time_us=draw(st.integers(-(2**63), 2**63 - 1)),
        pressure_raw=draw(arrays(np.uint16, (n, ch))),
        layout_id=draw(st.integers(0, 255)),
        pressure_unit=draw(st.sampled_from(list(PressureUnit))),
        pressure_scale=draw(pos_f32),
        pressure_offset=draw(f32),
        imu_raw=draw(arrays(np.int16, (n, 6))) if with_imu else None,
        acc_scale_g=draw(nonneg_f32) if with_imu else 0.0,
        gyro_scale_dps=draw(nonneg_f32) if with_imu else 0.0,
    )


@settings(max_examples=300, deadline=None)
@given(batches())
def test_round_trip_preserves_every_field(batch: Batch) -> None:
    decoded = decode_batch(encode_batch(batch))
    assert decoded.device_id == batch.device_id
    assert decoded.side == batch.side
    assert decoded.sample_rate_hz == batch.sample_rate_hz
    assert (decoded.first_seq, decoded.device_time_us, decoded.collector_time_us) == (
        batch.first_seq, batch.device_time_us, batch.collector_time_us)
    assert decoded.layout_id == batch.layout_id and decoded.pressure_unit == batch.pressure_unit
    assert np.float32(decoded.pressure_scale) == np.float32(batch.pressure_scale)
    assert np.float32(decoded.pressure_offset) == np.float32(batch.pressure_offset)
    np.testing.assert_array_equal(decoded.pressure_raw, batch.pressure_raw)
    if batch.imu_raw is None:
        assert decoded.imu_raw is None
    else:
        np.testing.assert_array_equal(decoded.imu_raw, batch.imu_raw)
    # and encoding is a fixed point
    assert encode_batch(decoded) == encode_batch(batch)


@settings(max_examples=300, deadline=None)
@given(batches(), st.data())
def test_any_single_byte_mutation_is_rejected_or_decodes(batch: Batch, data) -> None:
    payload = bytearray(encode_batch(batch))
    i = data.draw(st.integers(0, len(payload) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != payload[i]))
    payload[i] = new
    # CRC-32 catches every single-byte change: the result is always a typed error
    try:
        decode_batch(bytes(payload))
    except CodecError as exc:
        assert exc.reason and str(exc)
    else:  # pragma: no cover - a CRC-32 collision on one byte is impossible
        raise AssertionError("a mutated payload decoded without error")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(blob: bytes) -> None:
    try:
        decode_batch(blob)
    except CodecError as exc:
        assert exc.reason
