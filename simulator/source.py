"""A simulated insole: the simulator's device emulation fed through the collector's real data path.

``simulator.device.device_blocks`` produces exactly what a device would send
(wrapping-free frame counter, drifting device clock, quantised counts, lost
notifications). This source adds arrival times on the collector's clock, with
BLE-like latency jitter, either paced in real time or as fast as possible.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np

from collector.sources.base import DeviceFrames, InsoleSource
from insole_common.codec import PressureUnit, Side
from insole_common.layouts import get_layout
from simulator import device as sim_device


class SimulatedInsoleSource(InsoleSource):
    """Streams one foot of a :class:`simulator.Simulation`.

    ``start_time_us`` is the collector time of the recording's t = 0.
    ``realtime`` paces notifications at the true rate, ``speedup`` at that many times the true rate; otherwise
    they are produced as fast as the pipeline takes them, with synthetic arrival times.
    """

    def __init__(
        self,
        sim,
        side: Side,
        *,
        device_id: str | None = None,
        start_time_us: int | None = None,
        realtime: bool = False,
        speedup: float | None = None,
        frames_per_notification: int = 5,
        latency_ms: tuple[float, float] = (8.0, 40.0),
        seq_offset: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._device = sim_device
        self.sim = sim
        self.side = side
        foot = sim.recording.feet[side]
        self.device_id = device_id or foot.device_id or f"sim-{side}"
        self.sample_rate_hz = foot.sample_rate_hz
        self._t0_s = foot.t0_s
        self.layout_id = get_layout(foot.layout.name).wire_id if foot.layout else 0
        self.start_time_us = time.time_ns() // 1000 if start_time_us is None else start_time_us
        self.realtime = realtime
        self.speedup = speedup if speedup is not None else (1.0 if realtime else None)
        self.frames_per_notification = frames_per_notification
        self.latency_ms = latency_ms
        #: added to the simulation's frame counter (which starts at 0), so that a device that keeps
        #: counting across sessions can be emulated; (device_id, seq) must never repeat
        self.seq_offset = seq_offset
        self._rng = np.random.default_rng(seed + (0 if side == "L" else 1))

    async def frames(self) -> AsyncIterator[DeviceFrames]:
        self.status.connected = True
        expected_seq: int | None = None
        wall0 = time.monotonic()
        try:
            for n_yielded, block in enumerate(
                self._device.device_blocks(self.sim, self.side, frames_per_block=self.frames_per_notification)
            ):
                true_end_s = (block.first_seq + block.pressure_counts.shape[0] - 1) / self.sample_rate_hz
                if self.speedup:
                    delay = true_end_s / self.speedup - (time.monotonic() - wall0)
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif n_yielded % 50 == 0:
                    await asyncio.sleep(0)  # let the rest of the collector run
                latency_us = self._rng.uniform(*self.latency_ms) * 1000
                arrival_us = self.start_time_us + int(round((self._t0_s + true_end_s) * 1e6 + latency_us))
                first_seq = self.seq_offset + block.first_seq
                if expected_seq is not None and first_seq > expected_seq:
                    missing = first_seq - expected_seq
                    self.status.frames_missing_n += missing
                    self.status.gaps.append((expected_seq, missing))
                n = block.pressure_counts.shape[0]
                expected_seq = first_seq + n
                self.status.frames_received_n += n
                yield DeviceFrames(
                    side=self.side,
                    device_id=self.device_id,
                    first_seq=first_seq,
                    device_time_us=block.device_time_us,
                    arrival_time_us=arrival_us,
                    pressure_raw=block.pressure_counts,
                    sample_rate_hz=self.sample_rate_hz,
                    layout_id=self.layout_id,
                    pressure_unit=PressureUnit.KPA,
                    pressure_scale=self._device.PRESSURE_SCALE_KPA,
                    imu_raw=block.imu_counts,
                    acc_scale_g=self._device.ACC_SCALE_G if block.imu_counts is not None else 0.0,
                    gyro_scale_dps=self._device.GYRO_SCALE_DPS if block.imu_counts is not None else 0.0,
                    battery_pct=87.0,
                )
        finally:
            self.status.connected = False
