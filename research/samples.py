"""Where exported samples come from: one foot of one session, read in chunks.

A :class:`FootStream` describes one insole's samples (rate, layout, units, channels) and
yields them as Arrow record batches of at most ``chunk_rows`` rows with the columns

``frame_index`` (int64)  frame number from the foot's first frame in the session; a jump
                         is frames that never arrived
``t_s`` (float64)        seconds since the session's start
one column per channel   ``{channel}_{unit}`` for pressure (float32 from the archive),
                         ``acc_{x,y,z}_g``, ``gyr_{x,y,z}_dps``

so that an export of any length holds at most one chunk per foot in memory. Sources:
the raw archive written by the processing service (:func:`archive_streams`) and any
recording the analytics readers open (:func:`recording_streams`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from insole_common.layouts import LAYOUTS, SensorLayout
from insole_common.recording import ACC_COLUMNS, GYRO_COLUMNS, UNIT_SUFFIX, FootRecording, Recording

CHUNK_ROWS = 32_768
#: unit label by column suffix (inverse of insole_common.recording.UNIT_SUFFIX)
UNIT_BY_SUFFIX = {v: k for k, v in UNIT_SUFFIX.items()}
#: device model by sensor layout name
MODEL_BY_LAYOUT = {
    "kc16": "Kinetic Chain open insole (16 pressure channels)",
    "orphe6": "ORPHE INSOLE (6 pressure channels)",
    "gaitpdb8": "Ultraflex Computer Dyno Graphy, 8 force sensors per foot (PhysioNet gaitpdb)",
}
SIDE_NAME = {"L": "left", "R": "right"}


@dataclass(frozen=True)
class Channel:
    """One exported column: its name (with the unit suffix), unit and kind."""

    name: str
    unit: str
    #: pressure | force | acc | gyro
    kind: str
    #: x | y | z for IMU axes, n/a otherwise
    component: str = "n/a"
    #: position in the foot frame (ap 0 heel..1 toe, ml lateral +), pressure channels with a layout
    ap: float | None = None
    ml: float | None = None
    region: str | None = None


@dataclass
class FootStream:
    side: str
    sample_rate_hz: float
    channels: list[Channel]
    rows_n: int
    layout: SensorLayout | None
    device_model: str
    #: wire-format calibration and provenance, copied into metadata
    meta: dict = field(default_factory=dict)
    #: yields record batches (frame_index, t_s, channels...) of at most CHUNK_ROWS rows
    chunks: Callable[[], Iterator[pa.RecordBatch]] = lambda: iter(())

    @property
    def columns(self) -> list[str]:
        return ["frame_index", "t_s"] + [c.name for c in self.channels]

    def metadata(self) -> dict[str, object]:
        """Units, rate, layout and device as plain JSON-able values (Parquet metadata, sidecars)."""
        return {
            "side": self.side,
            "sample_rate_hz": self.sample_rate_hz,
            "sensor_layout": self.layout.name if self.layout else "custom",
            "sensor_positions": "docs/sensor-layouts.md (foot frame: ap 0 = heel .. 1 = toe, ml in foot widths, "
                                "lateral positive on both feet)",
            "device_model": self.device_model,
            "firmware": self.meta.get("firmware", "not reported (wire format v1 carries no firmware version)"),
            "units": {"t_s": "s", "frame_index": "1", **{c.name: c.unit for c in self.channels}},
            "channels": [{"name": c.name, "unit": c.unit, "kind": c.kind, "component": c.component, "ap": c.ap,
                          "ml": c.ml, "region": c.region} for c in self.channels],
            "imu_axes": "x anterior, y left, z up; acceleration includes gravity",
            **{k: v for k, v in self.meta.items() if k != "firmware"},
        }


def _channels(pressure_names: list[str], unit: str, layout: SensorLayout | None, imu: bool) -> list[Channel]:
    out = []
    placed = layout if layout is not None and layout.n_channels == len(pressure_names) else None
    kind = "force" if unit == "N" else "pressure"
    for i, name in enumerate(pressure_names):
        out.append(Channel(name, unit, kind, ap=placed.ap[i] if placed is not None else None,
                           ml=placed.ml[i] if placed is not None else None,
                           region=placed.regions[i] if placed is not None else None))
    if imu:
        out += [Channel(n, "g", "acc", n.split("_")[1]) for n in ACC_COLUMNS]
        out += [Channel(n, "deg/s", "gyro", n.split("_")[1]) for n in GYRO_COLUMNS]
    return out


def archive_streams(paths: dict[str, Path], start_us: int, *, chunk_rows: int = CHUNK_ROWS) -> list[FootStream]:
    """One :class:`FootStream` per archive file (``{side: path}``) of a session that started at ``start_us``."""
    streams = []
    for side, path in sorted(paths.items()):
        if not path.is_file():
            continue
        pf = pq.ParquetFile(path, pre_buffer=False)
        meta = {k.decode(): v.decode() for k, v in (pf.schema_arrow.metadata or {}).items() if k.startswith(b"kinetic.")}
        names = pf.schema_arrow.names
        imu = all(c in names for c in ACC_COLUMNS + GYRO_COLUMNS)
        skip = {"session_id", "device_id", "side", "seq", "t_us", *ACC_COLUMNS, *GYRO_COLUMNS}
        pressure = [n for n in names if n not in skip]
        unit = meta.get("kinetic.pressure_unit") or UNIT_BY_SUFFIX.get(pressure[0].rsplit("_", 1)[-1], "adc")
        layout = LAYOUTS.get(meta.get("kinetic.layout", ""))
        channels = _channels(pressure, unit, layout, imu)
        first_seq = pf.read_row_group(0, columns=["seq"]).column(0)[0].as_py() if pf.metadata.num_rows else 0

        def chunks(pf=pf, channels=channels, first_seq=first_seq) -> Iterator[pa.RecordBatch]:
            for rb in pf.iter_batches(batch_size=chunk_rows, columns=["seq", "t_us"] + [c.name for c in channels]):
                seq = rb.column("seq").to_numpy().astype(np.int64) - np.int64(first_seq)
                t_s = (rb.column("t_us").to_numpy() - np.int64(start_us)) / 1e6
                yield pa.record_batch([pa.array(seq, pa.int64()), pa.array(t_s, pa.float64())]
                                      + [rb.column(c.name) for c in channels],
                                      names=["frame_index", "t_s"] + [c.name for c in channels])

        streams.append(FootStream(
            side=side, sample_rate_hz=float(meta.get("kinetic.sample_rate_hz", "nan")), channels=channels,
            rows_n=pf.metadata.num_rows, layout=layout,
            device_model=MODEL_BY_LAYOUT.get(layout.name if layout else "", "unknown insole"),
            meta={"wire_version": meta.get("kinetic.wire_version"),
                  "pressure_scale": float(meta.get("kinetic.pressure_scale", "1")),
                  "pressure_offset": float(meta.get("kinetic.pressure_offset", "0")),
                  "acc_scale_g": float(meta.get("kinetic.acc_scale_g", "0")),
                  "gyro_scale_dps": float(meta.get("kinetic.gyro_scale_dps", "0")),
                  "source": "raw session archive (every frame the processing service accepted, once)"},
            chunks=chunks))
    return streams


def recording_streams(recording: Recording, *, chunk_rows: int = CHUNK_ROWS) -> list[FootStream]:
    """One :class:`FootStream` per foot of a recording opened by :mod:`processing.readers`.

    Rows that are missing on the recording's uniform grid (all pressure NaN) are left out;
    ``frame_index`` keeps their place.
    """
    streams = []
    for _side, foot in sorted(recording.feet.items()):
        streams.append(_foot_stream(foot, recording, chunk_rows))
    return streams


def _foot_stream(foot: FootRecording, recording: Recording, chunk_rows: int) -> FootStream:
    layout = foot.layout
    base = list(foot.channel_names) if foot.channel_names else (
        list(layout.channels) if layout is not None and layout.n_channels == foot.pressure.shape[1]
        else [f"ch{i + 1:02d}" for i in range(foot.pressure.shape[1])])
    suffix = UNIT_SUFFIX.get(foot.pressure_unit, "raw")
    names = [n if n.endswith(f"_{suffix}") else f"{n}_{suffix}" for n in base]
    acc_g, gyro_dps = foot.acc_g, foot.gyro_dps
    imu = acc_g is not None and gyro_dps is not None
    channels = _channels(names, foot.pressure_unit, layout, imu)
    keep = np.flatnonzero(~np.all(np.isnan(foot.pressure), axis=1))

    def chunks() -> Iterator[pa.RecordBatch]:
        for lo in range(0, keep.size, chunk_rows):
            idx = keep[lo: lo + chunk_rows]
            cols = [pa.array(idx.astype(np.int64)), pa.array(foot.t0_s + idx / foot.sample_rate_hz)]
            cols += [pa.array(foot.pressure[idx, j]) for j in range(len(names))]
            if acc_g is not None and gyro_dps is not None:  # imu
                cols += [pa.array(acc_g[idx, j]) for j in range(3)] + [pa.array(gyro_dps[idx, j]) for j in range(3)]
            yield pa.record_batch(cols, names=["frame_index", "t_s"] + [c.name for c in channels])

    return FootStream(side=foot.side, sample_rate_hz=float(foot.sample_rate_hz), channels=channels, rows_n=int(keep.size),
                      layout=layout, device_model=MODEL_BY_LAYOUT.get(layout.name if layout else "",
                                                                      f"{recording.source_format} recording"),
                      meta={"source": f"{recording.source_format} recording, read by processing.readers"},
                      chunks=chunks)


def nan_to_null(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Floating NaN as null (so text formats write their missing-value marker)."""
    return pa.record_batch([_nan_to_null_column(col) for col in batch.columns], names=batch.schema.names)


def _nan_to_null_column(col):
    if pa.types.is_floating(col.type) and col.null_count == 0:
        nan = pc.is_nan(col)
        if pc.any(nan).as_py():
            return pc.if_else(nan, pa.scalar(None, col.type), col)
    return col


__all__ = ["CHUNK_ROWS", "Channel", "FootStream", "archive_streams", "nan_to_null", "recording_streams"]
