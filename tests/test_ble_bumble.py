"""The collector's real bleak code against emulated insoles, through Bumble's BLE stack (no radio).

Bumble's virtual controllers share one in-process link; the collector talks to
them with bleak (``backend=`` the Bumble backend) and bleak-retry-connector,
exactly as it would talk to BlueZ. Each test bounds every wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest

from collector.emulation import BumbleLink, EmulatedInsole, Faults
from collector.emulation.emulated_insole import synthetic_imu, synthetic_pressure
from collector.service import Collector, CollectorConfig
from collector.sources.base import DeviceFrames
from collector.sources.ble import BleInsoleSource, scan_insoles
from insole_common.codec import decode_batch
from transport.mqtt import MqttSettings


def source_for(link: BumbleLink, ins: EmulatedInsole, **kw) -> BleInsoleSource:
    return BleInsoleSource(address=ins.address, side=ins.side, profile=ins.profile, scanner_backend=link.scanner_backend,
                           client_backend=link.client_backend, scan_timeout_s=2.0, **kw)


async def pump(source: BleInsoleSource, out: list[DeviceFrames], sink=None) -> None:
    async for f in source.frames():
        out.append(f)
        if sink is not None:
            sink(f)


async def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def stream_until(src: BleInsoleSource, done: Callable[[list[DeviceFrames]], bool],
                       timeout_s: float = 10) -> list[DeviceFrames]:
    """Pump ``src`` until ``done(frames so far)`` holds (asserted within ``timeout_s``), then stop pumping."""
    frames: list[DeviceFrames] = []
    task = asyncio.create_task(pump(src, frames))
    assert await wait_until(lambda: done(frames), timeout_s)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return frames


def frame_seqs(frames: list[DeviceFrames]) -> list[int]:
    return [f.first_seq + i for f in frames for i in range(f.n_frames)]


def test_scan_connect_mtu_notify_and_every_fault_accounted() -> None:
    async def run():
        link = BumbleLink()
        faults = Faults(drop_at={6}, duplicate_at={9}, reorder_at={12}, truncate_at={15}, corrupt_at={18})
        ins = EmulatedInsole(link, address="F0:00:00:00:00:11", side="L", faults=faults)
        other = EmulatedInsole(link, address="F0:00:00:00:00:12", side="R", profile="orphe", sample_rate_hz=200)
        await ins.start()
        await other.start()
        found = await scan_insoles(0.5, profiles=["kc16"], backend=link.scanner_backend)
        src = source_for(link, ins)
        frames = await stream_until(src, lambda _: len(ins.sent) >= 30)
        await ins.stop()
        await other.stop()
        return found, src, ins, frames

    found, src, ins, frames = asyncio.run(run())
    assert [(f.address, f.profile) for f in found] == [("F0:00:00:00:00:11", "kc16")]  # service-UUID filter
    assert src.mtu == 247 and ins.negotiated_mtu == 247 and ins.frames_per_notification == 5
    got = frame_seqs(frames)
    assert got == sorted(got) and len(got) == len(set(got))  # in order, no repeats (reorder undone, duplicate dropped)
    sent_ok = ins.expected_received_seqs()
    assert got == [s for s in sent_ok if s <= got[-1]]
    lost = {s.first_seq: s.n_frames for s in ins.sent if s.fault in ("drop", "truncate", "corrupt")}
    assert src.status.gaps == sorted(lost.items())
    assert src.status.bad_packet_reasons == {"truncated": 1, "bad_checksum": 1}
    assert src.status.duplicate_packets_n == 1 and src.status.late_packets_n == 0
    for f in frames:  # the exact bytes the insole sent
        seqs = np.arange(f.first_seq, f.first_seq + f.n_frames)
        np.testing.assert_array_equal(f.pressure_raw, synthetic_pressure(seqs, 100, 16, "L"))
        np.testing.assert_array_equal(f.imu_raw, synthetic_imu(seqs, 100))
    # the wire device id is derived from the paired address (known before connecting, used in the session
    # message); the id the insole reports in its info characteristic is kept beside it
    assert frames[0].device_id == "kc16-f00000000011" and src.hardware_id == ins.device_id
    assert frames[0].pressure_scale == pytest.approx(0.1) and frames[0].layout_id == 1


def test_left_right_aligned_within_10_ms_and_reconnect_with_exact_gap(tmp_path) -> None:
    """Two insoles with drifting clocks (+80 / -60 ppm) and BLE latency jitter; the right one walks
    away for 2 s (disconnects, stops advertising) and comes back."""

    async def run():
        link = BumbleLink()
        left = EmulatedInsole(link, address="F0:00:00:00:00:21", side="L", drift_ppm=80, event_skip_p=0.3, seed=1,
                              device_time_start_us=7_000_000)
        right = EmulatedInsole(link, address="F0:00:00:00:00:22", side="R", drift_ppm=-60, event_skip_p=0.3, seed=2,
                               device_time_start_us=3_900_000_000, seq_start=40_000)
        for ins in (left, right):
            await ins.start()
        sources = [source_for(link, left), source_for(link, right)]
        collector = Collector(CollectorConfig(patient="t-align", outbox_path=tmp_path / "o.sqlite", drain_timeout_s=0),
                              sources, MqttSettings(port=1))  # never connected: batches are read back from the outbox
        frames = {"L": [], "R": []}
        tasks = [asyncio.create_task(pump(s, frames[s.side], collector.handle_frames)) for s in sources]
        assert await wait_until(lambda: all(s.status.connected for s in sources), 10)
        await asyncio.sleep(4.0)
        await right.go_away(2.0)
        assert await wait_until(lambda: sources[1].connects_n == 2 and len(frames["R"]) > 0
                                and frames["R"][-1].arrival_time_us > right.reappeared_wall_us[-1], 10)
        await asyncio.sleep(4.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        collector.stop_session()
        rows = collector.outbox.peek(limit=100_000)
        for ins in (left, right):
            await ins.stop()
        collector.shutdown()
        return left, right, sources, frames, rows

    left, right, sources, frames, rows = asyncio.run(run())
    # --- alignment: each batch's first frame, mapped onto the collector clock, against its true sample time
    errs = {}
    for side, ins in (("L", left), ("R", right)):
        batches = [decode_batch(r.payload) for r in rows if r.topic.endswith(f"/raw/{side}")]
        k = np.array([b.first_seq - ins.seq_start for b in batches])
        mapped = np.array([b.collector_time_us for b in batches])
        true = ins.true_time_us(k)
        errs[side] = (true / 1e6, (mapped - true) / 1000)  # (s, ms)
    t_l, e_l = errs["L"]
    t_r, e_r = errs["R"]
    lr_ms = np.interp(t_r, t_l, e_l) - e_r
    learned = t_r >= min(t_l[0], t_r[0]) + 1.0  # after the first second of observations (first two batches)
    print(f"\nL/R alignment: max |L-R| {np.max(np.abs(lr_ms[learned])):.2f} ms after the first second "
          f"({np.max(np.abs(lr_ms)):.2f} ms including it), median {np.median(np.abs(lr_ms)):.2f} ms; "
          f"latency error L median {np.median(e_l):.2f} ms, R median {np.median(e_r):.2f} ms")
    assert np.max(np.abs(lr_ms[learned])) < 10
    # --- reconnection: within 5 s of the insole advertising again
    src_r = sources[1]
    _down_us, up_us = src_r.status.outages[0]
    reconnect_s = (up_us - right.reappeared_wall_us[0]) / 1e6
    # --- the gap: exactly the frames the insole sampled while nobody listened
    truth = [(a.first_seq + a.n_frames, b.first_seq - a.first_seq - a.n_frames)
             for a, b in zip(right.sent, right.sent[1:], strict=False) if b.first_seq != a.first_seq + a.n_frames]
    after = next(f for f in frames["R"] if f.first_seq == truth[0][0] + truth[0][1])
    first_data_s = (after.arrival_time_us - right.reappeared_wall_us[0]) / 1e6
    print(f"reconnect: link up {reconnect_s:.3f} s and first frames {first_data_s:.3f} s after the insole advertised "
          f"again; gap recorded {src_r.status.gaps}, truth {truth}; {len(rows)} batches")
    assert 0 < reconnect_s < 5 and first_data_s < 5
    assert len(truth) == 1 and src_r.status.gaps == truth
    assert sources[0].status.gaps == [] and src_r.status.frames_missing_n == truth[0][1]
    assert frame_seqs(frames["R"]) == sorted(set(frame_seqs(frames["R"])))


def test_counters_and_clock_roll_over_mid_stream() -> None:
    async def run():
        link = BumbleLink()
        ins = EmulatedInsole(link, address="F0:00:00:00:00:31", side="R", sample_rate_hz=200,
                             seq_start=65_536 - 200, device_time_start_us=(1 << 32) - 1_000_000)
        await ins.start()
        src = source_for(link, ins)
        frames = await stream_until(src, lambda fs: frame_seqs(fs)[-1:] > [65_536 + 300] if fs else False)
        await ins.stop()
        return ins, src, frames

    ins, src, frames = asyncio.run(run())
    seqs = frame_seqs(frames)
    assert seqs == list(range(seqs[0], seqs[-1] + 1)) and seqs[0] < 65_536 < seqs[-1]
    dev = np.array([f.device_time_us for f in frames])
    assert np.all(np.diff(dev) > 0) and dev[-1] > (1 << 32)
    # device time and sequence stay locked together across both wraps
    np.testing.assert_array_equal(dev, ins.device_time_start_us
                                  + (np.array([f.first_seq for f in frames]) - ins.seq_start) * 5000)
    assert src.status.gaps == [] and src.status.bad_packets_n == 0


@pytest.mark.parametrize("rate_hz", [200.0, 100.0])
def test_orphe_insole_exact_bytes_over_bumble(rate_hz: float) -> None:
    async def run():
        link = BumbleLink()
        ins = EmulatedInsole(link, address="F0:00:00:00:00:41", side="R", profile="orphe", sample_rate_hz=rate_hz,
                             seq_start=65_536 - 40, faults=Faults(corrupt_at={4}))
        await ins.start()
        src = source_for(link, ins)
        frames = await stream_until(src, lambda _: len(ins.sent) >= 25)
        await ins.stop()
        return ins, src, frames

    ins, src, frames = asyncio.run(run())
    n = 4 if rate_hz == 200 else 2
    assert {f.n_frames for f in frames} == {n} and frames[0].sample_rate_hz == rate_hz
    assert src.status.bad_packet_reasons == {"bad_header": 1}  # ORPHE has no checksum: a broken header is what shows
    assert src.status.gaps == [(ins.sent[4].first_seq, n)]
    for f in frames:
        seqs = np.arange(f.first_seq, f.first_seq + f.n_frames)
        np.testing.assert_array_equal(f.pressure_raw, synthetic_pressure(seqs, rate_hz, 6, "R"))
        np.testing.assert_array_equal(f.imu_raw, synthetic_imu(seqs, rate_hz))
    assert frames[0].layout_id == 3 and frames[0].acc_scale_g == pytest.approx(16 / 32768)
    assert src.status.battery_pct == 87.0
