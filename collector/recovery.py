"""The collector's journal records (:class:`storage.journal.FrameJournal`): every notification's frames, as
written while streaming, and the batches rebuilt from them after a crash or SIGKILL.

Two kinds of record, both small so the journal costs about the payload's bytes (docs/collector.md):

* ``F`` + side + a whole wire-format batch (:mod:`insole_common.codec`) of one notification: the device, its
  format and the clocks at that point. Written for a side's first notification after each checkpoint and
  whenever the device or its format changes.
* ``C`` + side + ``first_seq`` (u64) + ``n`` (u16) + the raw pressure (and IMU) counts: a later notification of
  the same device and format; its clocks follow from the ``F`` record's and the sample rate.

:func:`batches_from_journal` rebuilds the batches, cut at the same multiples of ``frames_per_batch`` in sequence
space as while streaming, so a rebuilt batch that was delivered before the crash covers the same frames and the
processing service keeps them once.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import replace

import numpy as np

from collector.sources.base import DeviceFrames
from insole_common.codec import IMU_AXES, Batch, decode_batch, encode_batch
from insole_common.errors import InsoleError

log = logging.getLogger(__name__)

_CONT = struct.Struct("<QH")


def full_record(batch: Batch) -> bytes:
    return b"F" + batch.side.encode() + encode_batch(batch)


def continuation_record(frames: DeviceFrames) -> bytes:
    imu = b"" if frames.imu_raw is None else np.ascontiguousarray(frames.imu_raw, dtype="<i2").tobytes()
    return (b"C" + frames.side.encode() + _CONT.pack(frames.first_seq, frames.n_frames)
            + np.ascontiguousarray(frames.pressure_raw, dtype="<u2").tobytes() + imu)


def _decode(bodies: list[bytes]) -> dict[str, list[Batch]]:
    refs: dict[str, Batch] = {}
    out: dict[str, list[Batch]] = {"L": [], "R": []}
    for body in bodies:
        kind, side = body[:1], body[1:2].decode("ascii", "replace")
        if side not in out:
            continue
        try:
            if kind == b"F":
                refs[side] = decode_batch(body[2:])
                out[side].append(refs[side])
            elif kind == b"C" and side in refs:
                ref = refs[side]
                seq, n = _CONT.unpack_from(body, 2)
                off = 2 + _CONT.size
                pressure = np.frombuffer(body, "<u2", n * ref.n_channels, off).reshape(n, ref.n_channels)
                imu = None
                if ref.imu_raw is not None:
                    imu = np.frombuffer(body, "<i2", n * IMU_AXES, off + pressure.nbytes).reshape(n, IMU_AXES)
                shift_us = int(round((seq - ref.first_seq) * 1e6 / ref.sample_rate_hz))
                out[side].append(replace(ref, first_seq=seq, device_time_us=ref.device_time_us + shift_us,
                                         collector_time_us=ref.collector_time_us + shift_us,
                                         pressure_raw=pressure.copy(), imu_raw=None if imu is None else imu.copy()))
        except (InsoleError, ValueError, struct.error) as exc:  # a record that does not decode: skipped
            log.warning("skipped a journal record that does not decode: %s", exc)
    return out


def _same_run(a: Batch, b: Batch) -> bool:
    return (a.device_id == b.device_id and a.first_seq + a.n_frames == b.first_seq and a.n_channels == b.n_channels
            and a.layout_id == b.layout_id and a.sample_rate_hz == b.sample_rate_hz
            and a.pressure_unit == b.pressure_unit and (a.imu_raw is None) == (b.imu_raw is None))


def batches_from_journal(bodies: list[bytes], frames_per_batch: int) -> list[Batch]:
    """The journal's frames as batches (per side, by sequence number, cut at multiples of ``frames_per_batch``)."""
    out: list[Batch] = []
    for pieces in _decode(bodies).values():
        runs: list[list[Batch]] = []
        for b in sorted(pieces, key=lambda b: b.first_seq):
            if runs and b.first_seq < runs[-1][-1].first_seq + runs[-1][-1].n_frames:
                continue  # already there
            if runs and _same_run(runs[-1][-1], b):
                runs[-1].append(b)
            else:
                runs.append([b])
        for run in runs:
            out.extend(_cut(run, frames_per_batch))
    return out


def _cut(run: list[Batch], fpb: int) -> list[Batch]:
    head = run[0]
    pressure = np.concatenate([b.pressure_raw for b in run])
    imu = None if head.imu_raw is None else np.concatenate([b.imu_raw for b in run if b.imu_raw is not None])
    out, start, n = [], 0, pressure.shape[0]
    while start < n:
        seq = head.first_seq + start
        end = min(n, start + fpb - seq % fpb)
        shift_us = int(round(start * 1e6 / head.sample_rate_hz))
        out.append(replace(head, first_seq=seq, device_time_us=head.device_time_us + shift_us,
                           collector_time_us=head.collector_time_us + shift_us, pressure_raw=pressure[start:end],
                           imu_raw=None if imu is None else imu[start:end]))
        start = end
    return out
