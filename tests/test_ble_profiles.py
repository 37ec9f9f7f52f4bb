"""Profile decoders (pure functions) and the notification decoder's ordering / gap accounting."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest

from collector.emulation.signals import synthetic_imu, synthetic_pressure
from collector.errors import PacketChecksumError, PacketError
from collector.profiles import get_profile, kc_open, orphe, profile_for_service
from collector.profiles.base import DeviceInfo
from collector.sources.base import SourceStatus
from collector.sources.ble import NotificationDecoder, nearest_congruent
from insole_common.codec import PressureUnit

KC = get_profile("kc16")
ORPHE = get_profile("orphe")


def kc_packet(seq: int, n: int = 5, *, t_us: int = 1_000_000, imu: bool = True, battery: int | None = 80) -> bytes:
    seqs = np.arange(seq, seq + n)
    return kc_open.encode_packet(seq, t_us, synthetic_pressure(seqs, 100, 16, "L"), sample_rate_hz=100,
                                 imu_raw=synthetic_imu(seqs, 100) if imu else None, battery_pct=battery)


def test_kc_roundtrip_bit_exact_and_sized_to_the_mtu() -> None:
    assert kc_open.frames_per_notification(247) == 5  # 16 + 5 * 44 = 236 <= 244
    assert kc_open.frames_per_notification(247, has_imu=False) == 7
    assert kc_open.frames_per_notification(23) == 0
    data = kc_packet(65534, t_us=(1 << 32) - 10)
    assert len(data) == 16 + 5 * 44
    p = KC.decode(data)
    seqs = np.arange(65534, 65539)
    np.testing.assert_array_equal(p.pressure_raw, synthetic_pressure(seqs, 100, 16, "L"))
    np.testing.assert_array_equal(p.imu_raw, synthetic_imu(seqs, 100))
    assert (p.seq_raw, p.device_time_raw, p.sample_rate_hz, p.battery_pct) == (65534, (1 << 32) - 10, 100.0, 80.0)
    assert KC.decode(kc_packet(3, imu=False, battery=None)).imu_raw is None


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "too_long"),
        (lambda b: b"\x02" + b[1:], "bad_version"),
        (lambda b: b[:1] + b"\x80" + b[2:], "bad_flags"),
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "bad_checksum"),
        (lambda b: b[:8] + b"\x00" + b[9:], "absurd_count"),
    ],
)
def test_kc_malformed_packets_raise_typed_errors_with_a_reason(mutate, reason) -> None:
    with pytest.raises(PacketError) as info:
        KC.decode(mutate(kc_packet(10)))
    assert info.value.reason == reason
    if reason == "bad_checksum":
        assert isinstance(info.value, PacketChecksumError)


def test_kc_info_roundtrip() -> None:
    info = DeviceInfo(device_id="kc-0042", side="R", layout_id=1, pressure_unit=PressureUnit.KPA, pressure_scale=0.1,
                      acc_scale_g=1 / 4096, gyro_scale_dps=0.07, sample_rate_hz=200)
    got = KC.decode_info(kc_open.encode_info(info))
    assert (got.device_id, got.side, got.layout_id, got.pressure_unit, got.sample_rate_hz) == ("kc-0042", "R", 1,
                                                                                               PressureUnit.KPA, 200)
    assert got.pressure_scale == pytest.approx(0.1)


@pytest.mark.parametrize("header", [55, 54, 56])
def test_orphe_104_byte_big_endian_layout(header: int) -> None:
    n = orphe.MODES[header][0]
    seqs = np.arange(40, 40 + n)
    pressure = synthetic_pressure(seqs, 200, 6, "R")
    imu = synthetic_imu(seqs, 200)
    data = orphe.encode_packet(header, 65535, 23 * 3_600_000 + 59 * 60_000 + 59_000 + 998, pressure, imu)
    assert len(data) == 104
    # independent check of the published offsets: serial at 1 (BE), time bytes 3..7,
    # oldest sample in the last slot, pressure channel 1 at slot offset 12 (55/54) or 20 (56)
    stride, p_off = (24, 20) if header != 56 else (32, 28)
    assert struct.unpack_from(">H", data, 1)[0] == 65535 and tuple(data[3:6]) == (23, 59, 59)
    assert struct.unpack_from(">H", data, 6)[0] == 998
    oldest_slot = n - 1
    assert struct.unpack_from(">6H", data, p_off + stride * oldest_slot) == tuple(pressure[0])
    assert struct.unpack_from(">3h", data, 8 + (8 if header == 56 else 0) + stride * oldest_slot) == tuple(imu[0, 3:])
    p = ORPHE.decode(data)
    np.testing.assert_array_equal(p.pressure_raw, pressure)
    np.testing.assert_array_equal(p.imu_raw, imu)
    assert p.seq_raw == 65535 and p.device_time_raw == 86_399_998
    assert p.sample_rate_hz == (100.0 if header == 56 else 200.0)


@pytest.mark.parametrize(("data", "reason"), [(b"\x37" * 103, "truncated"), (b"\x32" + bytes(103), "unsupported_mode"),
                                              (b"\x99" + bytes(103), "bad_header"),
                                              (b"\x37\x00\x01\x18" + bytes(100), "bad_time")])
def test_orphe_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(PacketError) as info:
        ORPHE.decode(data)
    assert info.value.reason == reason


def test_orphe_device_information_scales_and_side() -> None:
    info = ORPHE.decode_info(orphe.encode_info(battery_pct=64, right=True, acc_range_index=2, gyro_range_index=3))
    assert (info.side, info.battery_pct, info.layout_id) == ("R", 64.0, 3)
    assert info.acc_scale_g == pytest.approx(8 / 32768) and info.gyro_scale_dps == pytest.approx(0.07)


def test_profile_lookup_by_advertised_service() -> None:
    assert profile_for_service([kc_open.SERVICE_UUID.upper()]) is KC
    assert profile_for_service(["0000180f-0000-1000-8000-00805f9b34fb", orphe.SERVICE_UUID]) is ORPHE
    assert profile_for_service([]) is None


@pytest.mark.parametrize(("raw", "pred", "mod", "want"), [(5, 65_540, 65536, 65_541), (65_530, 65_541, 65536, 65_530),
                                                       (10, 86_400_000 + 3, 86_400_000, 86_400_010), (0, 0, 256, 0)])
def test_nearest_congruent(raw, pred, mod, want) -> None:
    assert nearest_congruent(raw, pred, mod) == want


def test_decoder_orders_dedups_and_records_gaps_exactly_across_rollover() -> None:
    st = SourceStatus()
    dec = NotificationDecoder(KC, side="L", device_id="d", status=st)
    start = 65_536 - 20
    pkts = [(start + 5 * k, kc_packet((start + 5 * k) % 65536, t_us=((start + 5 * k) * 10_000) % (1 << 32)))
            for k in range(12)]
    order = [0, 1, 3, 2, 2, 4, 6, 7, 8, 9, 10, 11]  # 2/3 swapped, 2 repeated, 5 lost
    out = []
    for i in order:
        seq, data = pkts[i]
        out += dec.feed(data, 1_700_000_000_000_000 + seq * 10_000 + 8_000)
    out += dec.feed(b"garbage", 1_700_000_000_000_000)
    out += dec.flush()
    seqs = [f.first_seq + j for f in out for j in range(f.n_frames)]
    assert seqs == [s for s in range(start, start + 60) if not start + 25 <= s < start + 30]
    assert st.gaps == [(start + 25, 5)] and st.frames_missing_n == 5 and st.frames_received_n == 55
    assert st.duplicate_packets_n == 1 and st.bad_packet_reasons == {"truncated": 1}
    times = [f.device_time_us for f in out]
    assert all(b > a for a, b in itertools.pairwise(times))  # the 32-bit clock unwrapped


def test_decoder_unwraps_a_long_outage_by_device_time() -> None:
    """After 15 minutes away the 16-bit frame counter wrapped 1.4 times; the device clock says how far."""
    st = SourceStatus()
    dec = NotificationDecoder(KC, side="R", device_id="d", status=st)
    t0 = 1_700_000_000_000_000
    dec.feed(kc_packet(100, t_us=1_000_000), t0)
    later = 100 + 5 + 90_000  # 900 s at 100 Hz
    got = dec.feed(kc_packet(later % 65536, t_us=1_000_000 + 90_005 * 10_000), t0 + 900_050_000)
    got += dec.flush()
    assert got[0].first_seq == later
    assert st.gaps == [(105, 90_000)]
