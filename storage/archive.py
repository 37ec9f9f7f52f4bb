"""Raw session archive: every accepted frame, once, as compressed Parquet partitioned by patient and day.

Layout (Hive-style partitions, readable by pandas/pyarrow/duckdb/Spark)::

    ARCHIVE/patient=<pseudonym>/day=<YYYY-MM-DD>/<session_id>_<side>.parquet

Columns: ``session_id``, ``device_id``, ``side``, ``seq`` (uint64, device frame
number), ``t_us`` (int64, collector time base, us since the Unix epoch), one column
per pressure channel named ``{channel}_{unit}`` (e.g. ``p01_kpa``) and, with an IMU,
``acc_{x,y,z}_g`` and ``gyr_{x,y,z}_dps``. Schema metadata (``kinetic.*`` keys) holds
the sample rate, sensor layout, units, calibration and the wire-format version.

Files are written from the processing service's de-duplicated raw store when a
session closes, through a temporary file and an atomic rename, so a redelivered
message or a rerun rewrites the same file with the same rows: exactly once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from insole_common.codec import WIRE_VERSION, Batch
from insole_common.layouts import LAYOUTS_BY_WIRE_ID
from insole_common.recording import ACC_COLUMNS, GYRO_COLUMNS, UNIT_SUFFIX

#: rows per Parquet row group: readers (research exports) stream a file a row group at a time
ROW_GROUP_ROWS = 65_536


def pressure_column_names(batch: Batch) -> list[str]:
    layout = LAYOUTS_BY_WIRE_ID.get(batch.layout_id)
    names = layout.channels if layout is not None and layout.n_channels == batch.n_channels else [
        f"ch{i + 1:02d}" for i in range(batch.n_channels)]
    suffix = UNIT_SUFFIX.get(batch.pressure_unit.label, "raw")
    return [f"{n}_{suffix}" for n in names]


def batches_to_table(session_id: str, batches: list[Batch]) -> pa.Table:
    """One side's batches (one device) as an Arrow table with metadata."""
    head = batches[0]
    seq = np.concatenate([b.seqs for b in batches])
    t_us = np.concatenate([
        b.collector_time_us + np.round(np.arange(b.n_frames) * 1e6 / b.sample_rate_hz).astype(np.int64)
        for b in batches])
    pressure = np.concatenate([b.pressure for b in batches]).astype(np.float32)
    n = seq.size
    cols: dict[str, pa.Array] = {
        "session_id": pa.array([session_id] * n, pa.dictionary(pa.int8(), pa.string())) if n else pa.array([],
                                                                                                           pa.string()),
        "device_id": pa.array([head.device_id] * n, pa.dictionary(pa.int8(), pa.string())),
        "side": pa.array([head.side] * n, pa.dictionary(pa.int8(), pa.string())),
        "seq": pa.array(seq, pa.uint64()),
        "t_us": pa.array(t_us, pa.int64()),
    }
    for name, column in zip(pressure_column_names(head), pressure.T, strict=True):
        cols[name] = pa.array(column, pa.float32())
    if head.has_imu:
        acc = np.concatenate([b.acc_g for b in batches]).astype(np.float32)
        gyr = np.concatenate([b.gyro_dps for b in batches]).astype(np.float32)
        for name, column in zip(ACC_COLUMNS + GYRO_COLUMNS, np.hstack([acc, gyr]).T, strict=True):
            cols[name] = pa.array(column, pa.float32())
    layout = LAYOUTS_BY_WIRE_ID.get(head.layout_id)
    meta = {
        "kinetic.wire_version": str(WIRE_VERSION),
        "kinetic.sample_rate_hz": repr(head.sample_rate_hz),
        "kinetic.layout": layout.name if layout else "custom",
        "kinetic.pressure_unit": head.pressure_unit.label,
        "kinetic.pressure_scale": repr(head.pressure_scale),
        "kinetic.pressure_offset": repr(head.pressure_offset),
        "kinetic.acc_scale_g": repr(head.acc_scale_g),
        "kinetic.gyro_scale_dps": repr(head.gyro_scale_dps),
        "kinetic.time_base": "t_us: collector time base, microseconds since the Unix epoch",
        "kinetic.imu_axes": "x anterior, y left, z up; acceleration includes gravity",
    }
    table = pa.table(cols)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **{k: v.encode() for k, v in meta.items()}})


class RawArchive:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def session_paths(self, patient: str, day: str, session_id: str) -> dict[str, Path]:
        folder = self.root / f"patient={patient}" / f"day={day}"
        return {side: folder / f"{session_id}_{side}.parquet" for side in ("L", "R")}

    def write_session(self, patient: str, day: str, session_id: str, batches: list[Batch]) -> list[Path]:
        """Write (or rewrite, identically) the session's files; returns the paths written.

        One file per side holds the side's main device (the one with the most frames). Frames of any other
        device on that side, or of the same device in another channel count or layout, go to files of their
        own, ``<session_id>_<side>.<k>.parquet`` (k = 1, 2, ... by decreasing frame count): one file, one
        format."""
        written = []
        for side, path in self.session_paths(patient, day, session_id).items():
            groups = _format_groups([b for b in batches if b.side == side])
            for k, mine in enumerate(groups):
                target = path if k == 0 else path.with_name(f"{session_id}_{side}.{k}.parquet")
                self._write_table(target, batches_to_table(session_id, mine))
                written.append(target)
        return written

    @staticmethod
    def _write_table(path: Path, table: pa.Table) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, *, patient: str | None = None, day: str | None = None, columns: list[str] | None = None):
        """Archived samples as a pandas DataFrame (with ``patient`` and ``day`` columns from the partitions)."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"no archive at {self.root}")
        dataset = ds.dataset(self.root, format="parquet", partitioning="hive")
        flt = None
        if patient is not None:
            flt = ds.field("patient") == patient
        if day is not None:
            cond = ds.field("day") == day
            flt = cond if flt is None else flt & cond
        return dataset.to_table(columns=columns, filter=flt).to_pandas()


def _format_groups(batches: list[Batch]) -> list[list[Batch]]:
    """One side's batches grouped by device and format (channels, layout, unit, rate, IMU), each group by
    sequence number, the largest group (frames) first."""
    groups: dict[tuple, list[Batch]] = {}
    for b in batches:
        key = (b.device_id, b.n_channels, b.layout_id, b.pressure_unit, b.sample_rate_hz, b.has_imu)
        groups.setdefault(key, []).append(b)
    ordered = sorted(groups.items(), key=lambda kv: (-sum(b.n_frames for b in kv[1]), str(kv[0])))
    return [sorted(g, key=lambda b: b.first_seq) for _key, g in ordered]


def archive_metadata(path: str | Path) -> dict[str, str]:
    """The ``kinetic.*`` metadata of one archive file."""
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"kinetic.")}


__all__ = ["RawArchive", "archive_metadata", "batches_to_table"]
