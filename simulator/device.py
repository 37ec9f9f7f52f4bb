"""Device emulation: one foot of a :class:`~simulator.Simulation` as the insole would emit it.

A block is one BLE notification: consecutive frames with the device's frame counter
(``first_seq``; frame ``i`` of the recording has seq ``i``), the device clock at its
first frame (``device_time_us``, from ``sim.truth.clock[side]``, so it drifts and is
offset against true time), pressure counts (uint16) and IMU counts (int16, or None).
Blocks that were lost (``sim.truth.delivered``) are skipped: the receiver sees a gap in
``first_seq``. Counts use the scales below; the simulator quantises ``sim.recording``
with the same scales, so ``counts * scale`` reproduces the recording exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from insole_common.codec import Side, quantize

#: kPa per pressure count (uint16: 0 .. 6553.5 kPa)
PRESSURE_SCALE_KPA = 0.1
#: g per accelerometer count (int16: +-8 g)
ACC_SCALE_G = 1.0 / 4096.0
#: deg/s per gyroscope count (int16: +-2293 deg/s)
GYRO_SCALE_DPS = 0.07


class DeviceBlock(NamedTuple):
    """One notification as the device sends it."""

    first_seq: int
    device_time_us: int
    #: uint16 (n_frames, n_channels), kPa = counts * PRESSURE_SCALE_KPA
    pressure_counts: np.ndarray
    #: int16 (n_frames, 6): ax, ay, az (ACC_SCALE_G), gx, gy, gz (GYRO_SCALE_DPS); None without IMU
    imu_counts: np.ndarray | None
    #: nominal sample rate the device reports
    sample_rate_hz: float


def device_blocks(sim, side: Side, *, frames_per_block: int | None = None) -> Iterator[DeviceBlock]:
    """Yield the delivered blocks of one foot in device order.

    ``frames_per_block`` defaults to the simulation's block size, so that blocks line
    up with the simulated losses; with another size a block never spans a lost frame
    (it is cut short at the gap).
    """
    foot = sim.recording.feet[side]
    fpb = int(frames_per_block or sim.params.frames_per_block)
    if fpb < 1:
        raise ValueError(f"frames_per_block must be >= 1, got {fpb}")
    ok = np.asarray(sim.truth.delivered[side], dtype=bool)
    clock = sim.truth.clock[side]
    fs = foot.sample_rate_hz
    n = foot.n_samples
    pressure = np.where(ok[:, None], foot.pressure, 0.0)
    p_counts = quantize(pressure, PRESSURE_SCALE_KPA)
    imu_counts = None
    if foot.has_imu:
        acc = np.where(ok[:, None], foot.acc_g, 0.0)
        gyro = np.where(ok[:, None], foot.gyro_dps, 0.0)
        imu_counts = np.hstack([quantize(acc, ACC_SCALE_G, dtype=np.int16),
                                quantize(gyro, GYRO_SCALE_DPS, dtype=np.int16)])
    seq = foot.seq.astype(np.int64) if foot.seq is not None else np.arange(n)
    dev_us = np.rint(np.asarray(clock.device_time_s(foot.t_s)) * 1e6).astype(np.int64)
    # a block starts at every multiple of fpb and after every gap; it ends before every gap
    idx = np.arange(n)
    starts = np.flatnonzero(ok & ((idx % fpb == 0) | np.r_[True, ~ok[:-1]]))
    for s in starts:
        e = min(s + fpb - s % fpb, n)
        gap = np.flatnonzero(~ok[s:e])
        if len(gap):
            e = s + int(gap[0])
        yield DeviceBlock(
            first_seq=int(seq[s]),
            device_time_us=int(dev_us[s]),
            pressure_counts=p_counts[s:e],
            imu_counts=imu_counts[s:e] if imu_counts is not None else None,
            sample_rate_hz=fs,
        )
