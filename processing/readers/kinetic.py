"""The project's own recording format, described below (the readers: docs/analytics.md, "Readers").

A recording is a directory::

    NAME/
      recording.json     {"format": "kinetic-recording", "version": 1, "sample_rate_hz": ..., ...}
      L.parquet          one row per sample of the left insole
      R.parquet          the same for the right insole

Columns of ``{side}.parquet``: ``t_s`` (float64, seconds on the recording's time
base), ``seq`` (uint64), one column per pressure channel named
``{channel}_{unit}`` (e.g. ``p01_kpa``), optionally ``total_force_n``,
``acc_x_g``/``acc_y_g``/``acc_z_g`` and ``gyr_x_dps``/``gyr_y_dps``/``gyr_z_dps``.
Missing samples are rows of NaN on the uniform grid.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from insole_common.errors import ValidationError
from insole_common.layouts import get_layout
from insole_common.recording import ACC_COLUMNS, GYRO_COLUMNS, FootRecording, Recording

FORMAT_NAME = "kinetic-recording"
FORMAT_VERSION = 1
META_FILE = "recording.json"


def is_kinetic_recording(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / META_FILE).is_file()


def write_recording(recording: Recording, path: str | Path) -> Path:
    """Write ``recording`` as a kinetic recording directory (files replaced atomically)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    feet_meta = {}
    for side, foot in recording.feet.items():
        cols: dict[str, np.ndarray] = {"t_s": foot.t_s}
        cols["seq"] = (foot.seq if foot.seq is not None else np.arange(foot.n_samples)).astype(np.uint64)
        # (strict=False: channel_names given explicitly are not checked against the pressure's width)
        cols.update(zip(foot.pressure_columns(), foot.pressure.T, strict=False))
        if foot.total_force_n is not None:
            cols["total_force_n"] = foot.total_force_n
        for names, arr in ((ACC_COLUMNS, foot.acc_g), (GYRO_COLUMNS, foot.gyro_dps)):  # each as exported
            if arr is not None:
                cols.update(zip(names, arr.T, strict=True))
        _atomic_parquet(pa.table(cols), out / f"{side}.parquet")
        feet_meta[side] = {
            "device_id": foot.device_id,
            "layout": foot.layout.name if foot.layout else None,
            "channels": list(foot.channel_names),
            "pressure_unit": foot.pressure_unit,
            "t0_s": foot.t0_s,
            "n_samples": foot.n_samples,
            "has_imu": foot.has_imu,
        }
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "sample_rate_hz": recording.sample_rate_hz,
        "source_format": recording.source_format,
        "feet": feet_meta,
        "meta": recording.meta,
    }
    _atomic_write(out / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())
    return out


def read_recording(path: str | Path) -> Recording:
    """Read a kinetic recording directory; raises ValidationError saying what is wrong."""
    root = Path(path)
    try:
        meta = json.loads((root / META_FILE).read_text())
    except FileNotFoundError:
        raise ValidationError(f"{root}: no {META_FILE}; not a kinetic recording", reason="not_a_recording") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{root / META_FILE}: not valid JSON ({exc})", reason="bad_file") from exc
    if not isinstance(meta, dict):
        raise ValidationError(f"{root / META_FILE}: expected a JSON object, got {type(meta).__name__}", reason="bad_file")
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise ValidationError(
            f"{root}: format {meta.get('format')!r} v{meta.get('version')!r}; this build reads {FORMAT_NAME} v{FORMAT_VERSION}",
            reason="bad_version",
        )
    rate = _check_meta(root / META_FILE, meta)
    feet = {}
    for side, fm in meta.get("feet", {}).items():
        try:
            table = pq.read_table(root / f"{side}.parquet")
        except (OSError, pa.ArrowInvalid) as exc:
            raise ValidationError(f"{root / (side + '.parquet')}: cannot read ({exc})", reason="bad_file") from exc
        layout = get_layout(fm["layout"]) if fm.get("layout") else None
        foot_stub = FootRecording(side, rate, 0.0, np.zeros((0, len(fm["channels"]))), fm["pressure_unit"],
                                  layout=layout, channel_names=tuple(fm["channels"]))
        missing = [c for c in [*foot_stub.pressure_columns(), "t_s"] if c not in table.column_names]
        if missing:
            raise ValidationError(f"{root / (side + '.parquet')}: missing columns {missing}", reason="bad_file")
        pressure = np.column_stack([table[c].to_numpy() for c in foot_stub.pressure_columns()]).astype(np.float64)
        has_acc = all(c in table.column_names for c in ACC_COLUMNS)
        has_gyro = all(c in table.column_names for c in GYRO_COLUMNS)
        feet[side] = FootRecording(
            side=side,
            sample_rate_hz=rate,
            t0_s=float(fm["t0_s"]),
            pressure=pressure,
            pressure_unit=fm["pressure_unit"],
            layout=layout,
            channel_names=tuple(fm["channels"]),
            total_force_n=table["total_force_n"].to_numpy() if "total_force_n" in table.column_names else None,
            acc_g=np.column_stack([table[c].to_numpy() for c in ACC_COLUMNS]) if has_acc else None,
            gyro_dps=np.column_stack([table[c].to_numpy() for c in GYRO_COLUMNS]) if has_gyro else None,
            seq=table["seq"].to_numpy() if "seq" in table.column_names else None,
            device_id=fm.get("device_id"),
        )
    return Recording(feet=feet, source_format=meta.get("source_format", FORMAT_NAME), meta=meta.get("meta", {}))


def _number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _check_meta(where: Path, meta: dict) -> float:
    """Check the fields of recording.json that the reader uses; returns the sample rate in Hz."""
    def bad(what: str) -> ValidationError:
        return ValidationError(f"{where}: {what}", reason="bad_file")

    rate = meta.get("sample_rate_hz")
    if not (_number(rate) and rate > 0):
        raise bad(f"sample_rate_hz must be a positive number, got {rate!r}")
    feet = meta.get("feet", {})
    if not isinstance(feet, dict):
        raise bad(f"feet must be an object keyed by side, got {type(feet).__name__}")
    if not isinstance(meta.get("meta", {}), dict):
        raise bad("meta must be an object")
    for side, fm in feet.items():
        if side not in ("L", "R"):
            raise bad(f"foot {side!r}: sides are 'L' and 'R'")
        if not isinstance(fm, dict):
            raise bad(f"foot {side}: expected an object, got {type(fm).__name__}")
        if not _number(fm.get("t0_s")):
            raise bad(f"foot {side}: t0_s must be a number, got {fm.get('t0_s')!r}")
        ch = fm.get("channels")
        if not (isinstance(ch, list) and ch and all(isinstance(c, str) for c in ch)):
            raise bad(f"foot {side}: channels must be a non-empty list of names, got {ch!r}")
        if not isinstance(fm.get("pressure_unit"), str):
            raise bad(f"foot {side}: pressure_unit must be a string, got {fm.get('pressure_unit')!r}")
        if not isinstance(fm.get("layout"), (str, type(None))):
            raise bad(f"foot {side}: layout must be a name or null, got {fm.get('layout')!r}")
    return float(rate)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
