"""Reading exports back into pandas: :func:`load_session`, :func:`load_strides`, :func:`load_table`.

All three read every export format (Parquet, CSV, BIDS-Motion); the format comes from
the export's ``manifest.json``.

``load_session(export, session)`` -> one row per sample, both feet, ordered by foot then time:

=================  =========  ==========================================================
column             dtype      meaning
=================  =========  ==========================================================
``subject``        str        research subject label
``session``        str        research session label
``side``           str        ``L`` or ``R``
``frame_index``    Int64      frame number from the foot's first frame; a jump = frames that
                              never arrived (not in BIDS, which has only ``t_s``: <NA>)
``t_s``            float64    seconds since the session's start
``{ch}_{unit}``    float      one column per pressure channel, e.g. ``p01_kpa`` (kPa), ``s1_n`` (N)
``acc_{x,y,z}_g``  float      acceleration with gravity, g (x anterior, y left, z up)
``gyr_{x,y,z}_dps`` float     angular velocity, degrees/s
=================  =========  ==========================================================

``DataFrame.attrs["feet"]`` holds each foot's metadata: sample rate, sensor layout and
positions, units per column, device model, calibration.

``load_strides(export, session=None)`` -> the per-stride table: ``subject``, ``session``
and the analytics' columns (docs/analytics.md): ``side``, ``heel_strike_s``, ``toe_off_s``,
``next_heel_strike_s``, ``stride_time_s``, ``stance_time_s``, ``swing_time_s``,
``stance_pct``, ``cadence_steps_per_min``, ``stride_length_m``, ``cop_ml_mean_fw``,
``lateral_load_fraction``, ``heel_load_fraction``, ... (times in seconds since the session's start).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from research.deid import bids_label
from research.export import ExportError, read_manifest


def _format(root: Path) -> str:
    try:
        return read_manifest(root)["format"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
        raise ExportError(f"{root} is not a Kinetic Chain export (no readable manifest.json): {exc}") from exc


def _session_dir(root: Path, session: str, fmt: str) -> tuple[str, str, Path]:
    label = bids_label(session) if fmt == "bids" else session
    found = sorted(root.glob(f"sub-*/ses-{label}"))
    if not found:
        raise ExportError(f"no session {session!r} in {root}")
    folder = found[0]
    return folder.parent.name[len("sub-"):], label, folder


def sessions(export: str | Path) -> list[str]:
    """The session labels in an export, from its sessions table: the same for every format, also for sessions
    without samples (Parquet and CSV write no session folder for those)."""
    table = load_table(export, "sessions")
    if table.empty:
        return []
    labels = table["session_id"].str.removeprefix("ses-") if "session_id" in table else table["session"]
    return sorted(set(labels.astype(str)))


def load_session(export: str | Path, session: str | None = None, *, side: str | None = None) -> pd.DataFrame:
    """The samples of one session of an export (the only one when ``session`` is None)."""
    root = Path(export)
    fmt = _format(root)
    if session is None:
        labels = sessions(root)
        if len(labels) != 1:
            raise ExportError(f"{root} holds {len(labels)} sessions; name one of {labels[:10]}")
        session = labels[0]
    subject, label, folder = _session_dir(root, session, fmt)
    frames, feet = [], {}
    for foot in ("L", "R"):
        if side is not None and foot != side:
            continue
        if fmt == "bids":
            got = _read_bids_foot(folder, subject, label, foot)
        else:
            got = _read_plain_foot(folder, subject, label, foot, fmt)
        if got is None:
            continue
        df, meta = got
        df.insert(0, "side", foot)
        frames.append(df)
        feet[foot] = meta
    if not frames:
        raise ExportError(f"session {session!r} has no samples{'' if side is None else f' for side {side}'}")
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "session", label)
    out.insert(0, "subject", subject)
    out["frame_index"] = out["frame_index"].astype("Int64")
    out.attrs["feet"] = feet
    return out


def _read_plain_foot(folder: Path, subject: str, session: str, foot: str, fmt: str):
    path = folder / f"sub-{subject}_ses-{session}_foot-{foot}_samples.{fmt}"
    if not path.is_file():
        return None
    if fmt == "parquet":
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"kinetic"])
        return table.replace_schema_metadata(None).to_pandas(), meta
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    names = ["frame_index", "t_s"] + [c["name"] for c in meta["channels"]]
    dtype = pa.float32() if meta.get("wire_version") else pa.float64()
    types = {"frame_index": pa.int64(), "t_s": pa.float64(), **dict.fromkeys(names[2:], dtype)}
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""],
                                                                        strings_can_be_null=True))
    return table.to_pandas(), meta


def _read_bids_foot(folder: Path, subject: str, session: str, foot: str):
    motion = sorted((folder / "motion").glob(f"sub-{subject}_ses-{session}_task-*_tracksys-insole{foot}_motion.tsv"))
    if not motion:
        return None
    path = motion[0]
    stem = str(path)[: -len("_motion.tsv")]
    channels = pd.read_csv(f"{stem}_channels.tsv", sep="\t", keep_default_na=False)
    sidecar = json.loads(Path(f"{stem}_motion.json").read_text(encoding="utf-8"))
    names = list(channels["name"])
    read = pacsv.ReadOptions(column_names=names)
    conv = pacsv.ConvertOptions(column_types={n: pa.float64() for n in names}, null_values=["n/a"])
    df = pacsv.read_csv(path, read_options=read, parse_options=pacsv.ParseOptions(delimiter="\t"),
                        convert_options=conv).to_pandas()
    df = df.rename(columns={"latency": "t_s"})
    df.insert(0, "frame_index", pd.array([pd.NA] * len(df), dtype="Int64"))
    meta = {"side": foot, "sample_rate_hz": sidecar["SamplingFrequency"], "sensor_layout": sidecar.get("SensorLayout"),
            "device_model": sidecar.get("Manufacturer"),
            "units": {"t_s": "s", **dict(zip(channels["name"], channels["units"], strict=True))},
            "channels": channels.to_dict("records")}
    return df, meta


def load_table(export: str | Path, name: str) -> pd.DataFrame:
    """One of the export's tables: ``subjects``, ``sessions``, ``strides`` or ``weekly``."""
    root = Path(export)
    fmt = _format(root)
    if fmt == "bids":
        path = {"subjects": root / "participants.tsv", "strides": root / "derivatives/kinetic-gait/strides.tsv",
                "weekly": root / "derivatives/kinetic-gait/weekly.tsv"}.get(name)
        if name == "sessions":
            parts = [pd.read_csv(p, sep="\t", na_values=["n/a"], keep_default_na=False).assign(
                subject=p.parent.name[len("sub-"):]) for p in sorted(root.glob("sub-*/sub-*_sessions.tsv"))]
            return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if path is None:
            raise ExportError(f"unknown table {name!r}")
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
    path = root / f"{name}.{fmt}"
    if not path.is_file():
        raise ExportError(f"no table {name!r} in {root}")
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def load_strides(export: str | Path, session: str | None = None) -> pd.DataFrame:
    """The per-stride table of an export (all sessions, or one)."""
    table = load_table(export, "strides")
    if session is not None and not table.empty:
        fmt = _format(Path(export))
        table = table[table["session"].astype(str) == (bids_label(session) if fmt == "bids" else session)]
    return table.reset_index(drop=True)


__all__ = ["load_session", "load_strides", "load_table", "sessions"]
