"""Writers for one session's samples and gait events: Parquet, CSV and BIDS-Motion.

Every writer streams chunk by chunk (:class:`research.samples.FootStream`), so memory
does not grow with the session's length. Paths are relative to the export's root;
:mod:`research.export` makes the whole export appear at once (atomic rename).

Parquet / CSV (one file per foot)::

    sub-<S>/ses-<R>/sub-<S>_ses-<R>_foot-<L|R>_samples.parquet   units, rate, layout, device in
                                                                  the schema metadata (key "kinetic")
    sub-<S>/ses-<R>/sub-<S>_ses-<R>_foot-<L|R>_samples.csv       + the same metadata in a .json sidecar

BIDS-Motion (https://bids-specification.readthedocs.io, modality "motion"): each insole is
its own tracking system (``tracksys-insoleL`` / ``insoleR``), because the two feet are
sampled on two clocks; the first channel of each is ``latency`` (type LATENCY, seconds
since the session's start), so every sample keeps its measured time and dropped frames
stay visible without resampling. Pressure channels are type MISC with their unit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from insole_common import metrics as C
from research.samples import SIDE_NAME, FootStream, nan_to_null

FORMATS = ("parquet", "csv", "bids")
#: BIDS version the BIDS-Motion output follows
BIDS_VERSION = "1.10.0"
#: BIDS channel type by channel kind
BIDS_TYPE = {"pressure": "MISC", "force": "MISC", "acc": "ACCEL", "gyro": "GYRO"}
TRACKED_POINT = {"L": "LeftFoot", "R": "RightFoot"}


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def write_json(root: Path, rel: str, obj) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json_bytes(obj))
    return rel


def table_text(table: pd.DataFrame, *, sep: str = ",", na: str = "") -> bytes:
    """A small table (strides, sessions, weekly) as text; floats in shortest round-trip form, LF line ends."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = pa.Table.from_batches([nan_to_null(b) for b in arrow.to_batches()], schema=arrow.schema) if arrow.num_rows else arrow
    sink = pa.BufferOutputStream()
    # no quoting: BIDS reads quotes as part of the value; a value holding the separator is an error, never corrupt
    pacsv.write_csv(arrow, sink, pacsv.WriteOptions(delimiter=sep, null_string=na, quoting_style="none",
                                                    quoting_header="none"))
    return sink.getvalue().to_pybytes()


def write_table_text(root: Path, rel: str, table: pd.DataFrame, *, sep: str, na: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(table_text(table, sep=sep, na=na))
    return rel


def session_prefix(subject: str, session: str) -> str:
    return f"sub-{subject}/ses-{session}/sub-{subject}_ses-{session}"


def write_samples(root: Path, fmt: str, subject: str, session: str, stream: FootStream, info: dict,
                  progress=None) -> list[str]:
    """Write one foot's samples in ``fmt``; returns the files written (relative to ``root``)."""
    if fmt == "bids":
        return _write_bids_motion(root, subject, session, stream, info, progress)
    rel = f"{session_prefix(subject, session)}_foot-{stream.side}_samples.{fmt}"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**stream.metadata(), **info}
    schema = pa.schema([("frame_index", pa.int64()), ("t_s", pa.float64())]
                       + [(c.name, pa.float32() if stream.meta.get("wire_version") else pa.float64()) for c in stream.channels])
    if fmt == "parquet":
        schema = schema.with_metadata({b"kinetic": json_bytes(meta)})
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for batch in stream.chunks():
                writer.write_batch(batch.cast(schema) if batch.schema != schema.remove_metadata() else batch)
                if progress:
                    progress(batch.num_rows)
        return [rel]
    if fmt == "csv":
        options = pacsv.WriteOptions(null_string="", quoting_header="none", quoting_style="none")
        with pacsv.CSVWriter(str(path), schema, write_options=options) as writer:
            for batch in stream.chunks():
                writer.write_batch(nan_to_null(batch.cast(schema)))
                if progress:
                    progress(batch.num_rows)
        sidecar = write_json(root, rel[: -len(".csv")] + ".json", meta)
        return [rel, sidecar]
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def _bids_motion_prefix(subject: str, session: str, task: str, side: str) -> str:
    return f"sub-{subject}/ses-{session}/motion/sub-{subject}_ses-{session}_task-{task}_tracksys-insole{side}"


def _write_bids_motion(root: Path, subject: str, session: str, stream: FootStream, info: dict, progress) -> list[str]:
    task = info["task"]
    prefix = _bids_motion_prefix(subject, session, task, stream.side)
    tsv = root / f"{prefix}_motion.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    data_cols = [c.name for c in stream.channels]
    value_type = pa.float32() if stream.meta.get("wire_version") else pa.float64()
    schema = pa.schema([("t_s", pa.float64())] + [(c, value_type) for c in data_cols])
    options = pacsv.WriteOptions(delimiter="\t", include_header=False, null_string="n/a", quoting_style="none")
    rows_n, t_first_s, t_last_s = 0, 0.0, 0.0  # the times are read only once rows_n > 0
    with pacsv.CSVWriter(str(tsv), schema, write_options=options) as writer:
        for batch in stream.chunks():
            # each value in the shortest text that reads back to the same float32 (archive) / float64
            cols = [batch.column("t_s")] + [batch.column(c).cast(value_type) for c in data_cols]
            writer.write_batch(nan_to_null(pa.record_batch(cols, schema=schema)))
            if batch.num_rows:
                t = batch.column("t_s")
                t_first_s = t[0].as_py() if rows_n == 0 else t_first_s
                t_last_s = t[-1].as_py()
                rows_n += batch.num_rows
            if progress:
                progress(batch.num_rows)
    point = TRACKED_POINT[stream.side]
    channels = pd.DataFrame(
        [{"name": "latency", "component": "n/a", "type": "LATENCY", "tracked_point": point, "units": "s",
          "description": "sample time, seconds since the session's start"}]
        + [{"name": c.name, "component": c.component, "type": BIDS_TYPE[c.kind], "tracked_point": point,
            "units": c.unit,
            "description": (f"{c.kind} sensor {c.name.rsplit('_', 1)[0]} under the {SIDE_NAME[stream.side]} foot"
                            + (f" at ap={c.ap:g}, ml={c.ml:g} ({c.region})" if c.ap is not None else "")
                            if c.kind in ("pressure", "force") else
                            f"{'acceleration (with gravity)' if c.kind == 'acc' else 'angular velocity'} along {c.component}")}
           for c in stream.channels])
    files = [f"{prefix}_motion.tsv",
             write_table_text(root, f"{prefix}_channels.tsv", channels, sep="\t", na="n/a")]
    counts = {kind: sum(c.kind == kind for c in stream.channels) for kind in ("acc", "gyro")}
    sidecar = {
        "TaskName": info["task_name"],
        "TaskDescription": info["task_description"],
        "SamplingFrequency": stream.sample_rate_hz,
        "TrackingSystemName": f"{SIDE_NAME[stream.side]} insole",
        "Manufacturer": stream.device_model,
        "ManufacturersModelName": stream.layout.name if stream.layout else "custom",
        "SoftwareVersions": info["software"],
        "MotionChannelCount": len(stream.channels) + 1,
        "LATENCYChannelCount": 1,
        "MISCChannelCount": sum(c.kind in ("pressure", "force") for c in stream.channels),
        "ACCELChannelCount": counts["acc"],
        "GYROChannelCount": counts["gyro"],
        "TrackedPointsCount": 1,
        **{f"{kind}ChannelCount": 0 for kind in ("ANGACCEL", "JNTANG", "MAGN", "ORNT", "POS", "VEL")},
        "Instructions": "none: recorded during everyday life" if info["task"] == "freeliving" else "n/a",
        "RecordingDuration": 0.0 if rows_n == 0 else t_last_s - t_first_s + 1.0 / stream.sample_rate_hz,
        "MissingValues": "n/a",
        "SensorLayout": stream.metadata()["sensor_layout"],
        "SensorPositions": [{"channel": c.name, "ap": c.ap, "ml": c.ml, "region": c.region}
                            for c in stream.channels if c.ap is not None],
        "SubjectArtefactDescription": "n/a",
    }
    if rows_n > 1 and t_last_s > t_first_s:
        # frames received per second of recording: below SamplingFrequency when frames were lost
        sidecar["SamplingFrequencyEffective"] = (rows_n - 1) / (t_last_s - t_first_s)
    files.append(write_json(root, f"{prefix}_motion.json", sidecar))
    return files


def events_table(strides: pd.DataFrame) -> pd.DataFrame:
    """Gait events (heel strike, toe off per stride) as a BIDS events table, ordered by onset."""
    if strides.empty:
        return pd.DataFrame(columns=["onset", "duration", "trial_type", "side", "stride_index"])
    rows = []
    for i, s in enumerate(strides.itertuples(index=False)):
        side = getattr(s, C.SIDE)
        rows.append((float(getattr(s, C.HEEL_STRIKE_S)), float(getattr(s, C.STANCE_TIME_S)), "heel_strike", side, i))
        rows.append((float(getattr(s, C.TOE_OFF_S)), float(getattr(s, C.SWING_TIME_S)), "toe_off", side, i))
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type", "side", "stride_index"]).sort_values(
        ["onset", "side", "trial_type"], kind="stable").reset_index(drop=True)


EVENTS_SIDECAR = {
    "onset": {"Description": "time of the gait event, seconds since the session's start", "Units": "s"},
    "duration": {"Description": "heel strike: the stance that follows (until toe off); toe off: the swing that "
                                "follows (until the next heel strike)", "Units": "s"},
    "trial_type": {"Description": "gait event", "Levels": {"heel_strike": "initial contact of the foot",
                                                            "toe_off": "last contact of the foot"}},
    "side": {"Description": "foot", "Levels": {"L": "left", "R": "right"}},
    "stride_index": {"Description": "row of the session's stride table this event belongs to"},
}


def write_bids_events(root: Path, subject: str, session: str, task: str, strides: pd.DataFrame) -> list[str]:
    prefix = f"sub-{subject}/ses-{session}/motion/sub-{subject}_ses-{session}_task-{task}"
    return [write_table_text(root, f"{prefix}_events.tsv", events_table(strides), sep="\t", na="n/a"),
            write_json(root, f"{prefix}_events.json", EVENTS_SIDECAR)]


def write_bids_scans(root: Path, subject: str, session: str, rows: list[tuple[str, str]]) -> str:
    rel = f"sub-{subject}/ses-{session}/sub-{subject}_ses-{session}_scans.tsv"
    return write_table_text(root, rel, pd.DataFrame(rows, columns=["filename", "acq_time"]), sep="\t", na="n/a")


def numpy_float(v):
    return float(v) if isinstance(v, (np.floating, float)) and np.isfinite(v) else v


__all__ = ["BIDS_VERSION", "FORMATS", "events_table", "json_bytes", "session_prefix", "table_text", "write_bids_events",
           "write_bids_scans", "write_json", "write_samples", "write_table_text"]
