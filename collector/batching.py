"""Cutting one insole's decoded frames into batches (no I/O; :class:`collector.service.Collector` stores them).

Batch boundaries sit at multiples of ``frames_per_batch`` in (offset) sequence space, so a batch's
``first_seq`` says where it belongs whatever the notifications looked like; frames that do not yet
make a whole batch stay pending (and are staged on disk by the collector as one partial batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from collector.clock import ClockAligner
from collector.sources.base import DeviceFrames
from insole_common.codec import Batch


@dataclass
class SideState:
    """What the collector keeps of one foot during a run."""

    aligner: ClockAligner = field(default_factory=ClockAligner)
    pending: list[DeviceFrames] = field(default_factory=list)
    batches_n: int = 0
    frames_n: int = 0
    last_seq: int | None = None
    device_id: str | None = None
    #: added to the device's sequence numbers in this run (see Collector._seq_offset); None until known
    seq_offset: int | None = None
    staged_at: float = float("-inf")


def same_format(a: DeviceFrames, b: DeviceFrames) -> bool:
    """Whether ``b`` may continue the batch ``a`` is in (same device, rate, channels, scales, layout)."""
    return (
        a.device_id == b.device_id and a.sample_rate_hz == b.sample_rate_hz and a.pressure_raw.shape[1] == b.pressure_raw.shape[1]
        and (a.imu_raw is None) == (b.imu_raw is None) and a.pressure_scale == b.pressure_scale
        and a.layout_id == b.layout_id and a.pressure_unit == b.pressure_unit
    )


def make_batch(state: SideState, head: DeviceFrames, seq: int, dev_us: int, pressure: np.ndarray,
               imu: np.ndarray | None) -> Batch:
    """A batch of ``head``'s format starting at ``seq`` / device time ``dev_us``, on the collector's clock."""
    return Batch(
        device_id=head.device_id,
        side=head.side,
        sample_rate_hz=head.sample_rate_hz,
        first_seq=seq,
        device_time_us=dev_us,
        collector_time_us=state.aligner.to_collector_us(dev_us),
        pressure_raw=np.ascontiguousarray(pressure),
        layout_id=head.layout_id,
        pressure_unit=head.pressure_unit,
        pressure_scale=head.pressure_scale,
        pressure_offset=head.pressure_offset,
        imu_raw=None if imu is None else np.ascontiguousarray(imu),
        acc_scale_g=head.acc_scale_g,
        gyro_scale_dps=head.gyro_scale_dps,
    )


def pending_batch(state: SideState) -> Batch | None:
    """Every pending frame as one (partial) batch, for staging; None when nothing is pending."""
    if not state.pending:
        return None
    head = state.pending[0]
    pressure = np.concatenate([f.pressure_raw for f in state.pending]) if len(state.pending) > 1 else head.pressure_raw
    imu = None
    if head.imu_raw is not None:
        imu = np.concatenate([f.imu_raw for f in state.pending]) if len(state.pending) > 1 else head.imu_raw
    return make_batch(state, head, head.first_seq, head.device_time_us, pressure, imu)


def cut_batches(state: SideState, frames_per_batch: int, *, only_complete: bool = False) -> list[Batch]:
    """Cut the pending frames into batches at multiples of ``frames_per_batch`` in sequence space.

    With ``only_complete`` a last batch that does not end on a boundary stays pending; otherwise
    everything pending is cut (at the end of a session or before a gap)."""
    out: list[Batch] = []
    if not state.pending:
        return out
    fpb = frames_per_batch
    head = state.pending[0]
    pressure = np.concatenate([f.pressure_raw for f in state.pending])
    imu = None if head.imu_raw is None else np.concatenate([f.imu_raw for f in state.pending])
    first_seq = head.first_seq
    n = pressure.shape[0]
    period_us = 1e6 / head.sample_rate_hz
    start = 0
    while start < n:
        seq = first_seq + start
        end = min(n, start + fpb - (seq % fpb))
        if only_complete and (seq + (end - start)) % fpb != 0:
            break
        dev_us = head.device_time_us + int(round(start * period_us))
        batch = make_batch(state, head, seq, dev_us, pressure[start:end], None if imu is None else imu[start:end])
        out.append(batch)
        state.batches_n += 1
        state.last_seq = batch.last_seq
        state.device_id = batch.device_id
        start = end
    if start >= n:
        state.pending = []
    else:
        rest = DeviceFrames(
            side=head.side, device_id=head.device_id, first_seq=first_seq + start,
            device_time_us=head.device_time_us + int(round(start * period_us)),
            arrival_time_us=state.pending[-1].arrival_time_us, pressure_raw=pressure[start:],
            sample_rate_hz=head.sample_rate_hz, layout_id=head.layout_id, pressure_unit=head.pressure_unit,
            pressure_scale=head.pressure_scale, pressure_offset=head.pressure_offset,
            imu_raw=None if imu is None else imu[start:], acc_scale_g=head.acc_scale_g,
            gyro_scale_dps=head.gyro_scale_dps, battery_pct=head.battery_pct,
        )
        state.pending = [rest]
    return out
