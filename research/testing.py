"""Long archive sessions for the export benchmark and the bounded-memory test.

:func:`write_archive_session` writes one bilateral session into a raw archive in exactly
the processing service's format (:func:`processing.archive.batches_to_table` on real
wire-format :class:`~insole_common.codec.Batch` objects), chunk by chunk, so hours of
data can be made without holding them in memory. The signal is a plausible gait-like
pressure pattern with sensor noise (its values only matter for compression).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from insole_common.codec import Batch, PressureUnit
from processing.archive import ROW_GROUP_ROWS, RawArchive, batches_to_table
from processing.service import day_of

RATE_HZ = 100.0
FRAMES_PER_BATCH = 50
BATCHES_PER_CHUNK = 400  # 20,000 frames per table written


def _batches(side: str, device_id: str, start_us: int, first_frame: int, n_frames: int, rng) -> list[Batch]:
    t = (first_frame + np.arange(n_frames)) / RATE_HZ + (0.55 if side == "R" else 0.0)
    phase = (t / 1.1) % 1.0
    load = np.where(phase < 0.62, np.sin(np.pi * np.clip(phase / 0.62, 0, 1)), 0.0)
    weights = np.linspace(1.0, 0.4, 16)
    counts = (load[:, None] * weights * 3000 + rng.normal(0, 8, (n_frames, 16))).clip(0, 65535).astype(np.uint16)
    imu = rng.normal(0, 300, (n_frames, 6)).astype(np.int16)
    out = []
    for lo in range(0, n_frames, FRAMES_PER_BATCH):
        seq = first_frame + lo
        out.append(Batch(device_id=device_id, side=side, sample_rate_hz=RATE_HZ, first_seq=seq,
                         device_time_us=int(seq * 1e6 / RATE_HZ),
                         collector_time_us=start_us + int(round(seq * 1e6 / RATE_HZ)) + (5_000 if side == "R" else 0),
                         pressure_raw=counts[lo: lo + FRAMES_PER_BATCH], layout_id=1, pressure_unit=PressureUnit.KPA,
                         pressure_scale=0.1, imu_raw=imu[lo: lo + FRAMES_PER_BATCH], acc_scale_g=1 / 4096,
                         gyro_scale_dps=1 / 16.4))
    return out


def write_archive_session(archive: RawArchive, *, hours: float, patient: str = "bench-patient",
                          session_id: str = "bench-session", start_us: int = 1_790_000_000_000_000,
                          seed: int = 0) -> dict[str, Path]:
    """Write ``hours`` of bilateral kc16 + IMU frames at 100 Hz; returns ``{side: path}``."""
    rng = np.random.default_rng(seed)
    total = int(hours * 3600 * RATE_HZ)
    chunk = FRAMES_PER_BATCH * BATCHES_PER_CHUNK
    paths = archive.session_paths(patient, day_of(start_us), session_id)
    for side, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = None
        try:
            for lo in range(0, total, chunk):
                table = batches_to_table(session_id, _batches(side, f"dev-{side}", start_us, lo, min(chunk, total - lo), rng))
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        finally:
            if writer is not None:
                writer.close()
    return paths


def peak_memory_mb(argv: list[str]) -> float:
    """Peak resident memory (MB) of ``kinetic ARGV...`` run in a child Python process.

    Read from the child's own ``VmHWM``: ``ru_maxrss`` would carry over the size of the
    forking parent. Raises RuntimeError with the child's stderr when it fails.
    """
    import subprocess
    import sys

    code = ("import runpy, sys; sys.argv = %r; "
            "rc = 0\ntry:\n    runpy.run_module('kinetic', run_name='__main__')\nexcept SystemExit as e:\n    rc = e.code or 0\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print('PEAK_KB', hwm, file=sys.stderr); sys.exit(rc)") % (["kinetic", *argv],)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    return int(run.stderr.rsplit("PEAK_KB", 1)[1].split()[0]) / 1024


__all__ = ["peak_memory_mb", "write_archive_session"]
