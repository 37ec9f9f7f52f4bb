"""De-identified exports of raw sessions, stride tables and weekly summaries.

:func:`select_sessions` picks sessions from the processing service's store and raw
archive (one session, one patient, or a cohort, within a date range);
:func:`recording_sessions` wraps a recording opened by the analytics readers (PhysioNet,
Moticon, the project's own format). :func:`write_export` writes them in one format.

Layout of an export (``S`` = subject label, ``R`` = session label, ``EXT`` = parquet or csv)::

    manifest.json                 source, what was removed or shifted, counts, files, software
    subjects.EXT                  subject, cohort
    sessions.EXT                  subject, session, start (shifted), duration_s, strides_n, feet, sample_rate_hz
    strides.EXT                   subject, session + the analytics' per-stride columns
    weekly.EXT                    subject, iso_week, week_start (shifted), days_n, sessions_n, strides_n + the
                                  week's metrics: medians of the daily medians (processing.summaries); a
                                  session's day is its (shifted) day in the patient's time zone
    sub-S/ses-R/sub-S_ses-R_foot-{L,R}_samples.EXT   (see research.formats)

BIDS-Motion puts the tables where BIDS wants them: ``participants.tsv``,
``sub-S/sub-S_sessions.tsv``, ``sub-S/ses-R/sub-S_ses-R_scans.tsv``, the gait events in
``..._events.tsv``, and the stride and weekly tables in ``derivatives/kinetic-gait/``.

The export is built in a hidden sibling folder and renamed into place at the end, so
``OUT`` either does not exist or is complete; a failed export removes its partial folder.
An export that would lack samples its sources hold, and a BIDS-Motion export with a session
without motion data, are refused (:func:`research.provenance.check_samples`).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from insole_common import metrics as C
from insole_common.calendar import day_of, day_start_us, iso_week
from processing.analytics import analyze
from processing.summaries import daily_metrics, weekly_metrics
from research import formats
from research.deid import Subject, bids_label, ensure_labels, manifest, session_label, subject_label
from research.provenance import ExportError, check_samples
from research.samples import FootStream, archive_streams, recording_streams
from storage.patients import patient_time_zone
from storage.research import labelled_sessions
from storage.strides import session_strides as stored_strides

#: the weekly table's columns: who, which week, counts, then the catalogue's daily metrics
WEEKLY_COLUMNS = ("subject", "iso_week", "week_start", "days_n", "sessions_n", "strides_n", *C.DAILY_METRICS)


@dataclass
class ExportSession:
    """One session to export, already de-identified except for what only the loaders touch."""

    subject: Subject
    #: research session label
    label: str
    #: the feet's samples (opened lazily, read chunk by chunk)
    streams: Callable[[], list[FootStream]]
    #: per-stride table, times in seconds since the session's start
    strides: Callable[[], pd.DataFrame]
    #: shifted start (naive UTC date-time), or None when the source has no date
    start: datetime | None = None
    #: shifted day ``YYYY-MM-DD`` of the start in the patient's time zone (the weekly table's day); None: the
    #: (UTC) day of ``start``
    day: str | None = None
    duration_s: float | None = None
    task: str = "freeliving"
    task_name: str = "free-living walking at home"
    task_description: str = ("everyday walking at home with pressure-sensing insoles; sessions start and stop "
                             "when the patient puts the insoles on and takes them off")
    extra: dict = field(default_factory=dict)
    #: frame numbers the database holds for the session (None: not from a database); > 0 with no samples from
    #: ``streams`` means the raw archive lacks them
    frames_span_n: int | None = None


@dataclass
class ExportResult:
    out: Path
    files: list[str]
    sessions_n: int
    subjects_n: int
    rows_n: int
    #: sessions that have no samples (none stored, or --allow-missing-samples)
    sessions_without_samples_n: int = 0


# choosing what to export ------------------------------------------------------------------------------
def select_sessions(store, archive, *, session: str | None = None, patient: str | None = None,
                    cohort: str | None = None, from_day: str | None = None, to_day: str | None = None,
                    secret: bytes | None = None) -> list[ExportSession]:
    """Closed sessions of the store matching the filters, as :class:`ExportSession` objects.

    ``from_day`` / ``to_day`` are inclusive days (``YYYY-MM-DD``) of the sessions' real starts, in each
    patient's time zone (as the service counts them). Research labels and date shifts are created on first
    use, keyed with ``secret`` (:func:`research.deid.ensure_labels`), and then kept.
    """

    store.migrate()
    ensure_labels(store, secret)
    try:
        first = date.fromisoformat(from_day).isoformat() if from_day else None
        last = date.fromisoformat(to_day).isoformat() if to_day else None
    except ValueError as exc:
        raise ExportError(f"dates must be YYYY-MM-DD: {exc}") from exc
    # a day in any time zone lies within the UTC day before and the one after: read that, keep the patient's days
    start_from_us = day_start_us(date.fromisoformat(first) - timedelta(days=1)) if first else None
    start_before_us = day_start_us(date.fromisoformat(last) + timedelta(days=2)) if last else None
    zones: dict[str, str] = {}  # patient -> time zone, read once per patient
    out = []
    for r in labelled_sessions(store, session=session, patient=patient, cohort=cohort, start_from_us=start_from_us,
                               start_before_us=start_before_us):
        if r.patient not in zones:
            zones[r.patient] = patient_time_zone(store, r.patient)
        day = day_of(r.start_us, zones[r.patient])
        if (first and day < first) or (last and day > last):
            continue
        subject = Subject(label=r.subject, cohort=r.cohort, date_shift_days=r.date_shift_days)
        paths = archive.session_paths(r.patient, day, r.session_id)
        out.append(ExportSession(
            subject=subject, label=r.label,
            streams=functools.partial(archive_streams, paths, r.start_us),
            strides=functools.partial(stored_strides, store, r.session_id),
            start=subject.shift_time_us(r.start_us), day=subject.shift_day(day),
            duration_s=None if r.end_us is None else (r.end_us - r.start_us) / 1e6, frames_span_n=r.frames_span_n))
    return out


def recording_sessions(recording, *, secret: bytes, identity: str, task: str = "walking", task_name: str = "walking",
                       task_description: str = "") -> list[ExportSession]:
    """A recording opened by :mod:`processing.readers` as one session of one subject, both labelled by the keyed
    hash of the recording's ``identity`` (its SHA-256, :func:`research.deid.recording_identity`): the same
    recording gets the same labels in every export with the same secret."""
    subject = Subject(label=subject_label(secret, f"recording/{identity}"), cohort="n/a", date_shift_days=0)
    result = {}

    def strides() -> pd.DataFrame:
        if "strides" not in result:
            result["strides"] = analyze(recording).strides
        return result["strides"]

    duration = max((f.t0_s + f.n_samples / f.sample_rate_hz for f in recording.feet.values()), default=0.0)
    return [ExportSession(subject=subject, label=session_label(secret, f"recording/{identity}"),
                          streams=lambda: recording_streams(recording),
                          strides=strides, start=None, duration_s=float(duration), task=task, task_name=task_name,
                          task_description=task_description or f"{recording.source_format} recording")]


# writing ---------------------------------------------------------------------------------------------
def labelled_strides(strides: pd.DataFrame, subject: str, session: str) -> pd.DataFrame:
    """A session's stride table with ``subject`` and ``session`` first, then the analytics' columns in order."""
    table = strides.copy()
    table.insert(0, "session", session)
    table.insert(0, "subject", subject)
    lead = ["subject", "session"] + [c for c in C.STRIDE_COLS if c in table]
    return table[lead + [c for c in table.columns if c not in lead]]


def _progress_bar(total: int, enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, unit=" samples", unit_scale=True, disable=not enabled, file=sys.stderr,
                desc="exporting", dynamic_ncols=True)


def _write_table(root: Path, fmt: str, stem: str, table: pd.DataFrame) -> str:
    if fmt == "parquet":
        rel = f"{stem}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), root / rel, compression="zstd")
        return rel
    sep, ext, na = ("\t", "tsv", "n/a") if fmt == "bids" else (",", "csv", "")
    return formats.write_table_text(root, f"{stem}.{ext}", table, sep=sep, na=na)


def weekly_table(strides: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    """Per subject and (shifted) ISO week, the service's weekly summary (:mod:`processing.summaries`): each
    day's metrics are the medians of its strides (:func:`~processing.summaries.daily_metrics`), the week's
    the medians of its days' values (:func:`~processing.summaries.weekly_metrics`), for every metric of
    :data:`insole_common.metrics.DAILY_METRICS`. A session's day is its ``day`` column (the shifted day in the
    patient's time zone, :attr:`ExportSession.day`) where there is one, else the (shifted, UTC) day of its start."""
    dated = sessions.dropna(subset=["start"])
    if dated.empty:
        return pd.DataFrame(columns=list(WEEKLY_COLUMNS))
    utc_day = pd.to_datetime(dated["start"]).dt.strftime("%Y-%m-%d")
    session_day = dated["day"].fillna(utc_day) if "day" in dated else utc_day
    days = pd.DataFrame({"subject": dated["subject"].to_numpy(), "session": dated["session"].to_numpy(),
                         "day": session_day.to_numpy()})
    by_day = dict(iter(strides.merge(days, on=["subject", "session"]).groupby(["subject", "day"]))) \
        if not strides.empty else {}
    daily = []
    for (subject, day), in_day in days.groupby(["subject", "day"], sort=True):
        day_strides = by_day.get((subject, day))
        week, week_start = iso_week(str(day))  # a YYYY-MM-DD string (strftime above)
        row = {"subject": subject, "iso_week": week, "week_start": week_start,
               "sessions_n": in_day["session"].nunique(), "strides_n": 0 if day_strides is None else len(day_strides)}
        daily.append(row | ({} if day_strides is None else _overall(daily_metrics(day_strides))))
    rows = []
    for (subject, in_iso_week, monday), in_week in pd.DataFrame(daily).groupby(["subject", "iso_week", "week_start"],
                                                                                sort=True):
        values = in_week.drop(columns=["subject", "iso_week", "week_start"]).reindex(
            columns=["sessions_n", "strides_n", *C.DAILY_METRICS])
        rows.append({"subject": subject, "iso_week": in_iso_week, "week_start": monday, "days_n": len(in_week),
                     **weekly_metrics(values)})
    out = pd.DataFrame(rows, columns=list(WEEKLY_COLUMNS))
    out[list(C.DAILY_METRICS)] = out[list(C.DAILY_METRICS)].astype(float)
    return out


def _overall(metrics: dict) -> dict:
    """The both-feet values of a day's metrics (the export's weekly table has no per-side columns)."""
    return {k: v for k, v in metrics.items() if k in C.BY_KEY}


def write_export(sessions: list[ExportSession], out: str | Path, fmt: str, *, software: str,
                 overwrite: bool = False, progress: bool | None = None, source: dict | None = None,
                 allow_missing_samples: bool = False) -> ExportResult:
    """Write ``sessions`` to the folder ``out`` in ``fmt`` (parquet, csv or bids), atomically. ``source`` (for the
    manifest: :func:`research.provenance.database_source` / ``recording_source``) says where they come from."""
    if fmt not in formats.FORMATS:
        raise ExportError(f"format must be one of {formats.FORMATS}, got {fmt!r}")
    if not sessions:
        raise ExportError("nothing to export: no closed session matches")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; choose a new folder or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        result = _write_all(sessions, tmp, fmt, software=software, progress=progress,
                            source=source or {"kind": "sessions chosen by the calling program"},
                            allow_missing_samples=allow_missing_samples)
        if out.exists():
            old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.out = out
    return result


def _write_all(sessions: list[ExportSession], root: Path, fmt: str, *, software: str, progress, source: dict,
               allow_missing_samples: bool) -> ExportResult:
    files: list[str] = []
    # a first pass (the check and the progress bar's total) only reads metadata; files are reopened one session at a time
    feet_rows = [[st.rows_n for st in s.streams()] for s in sessions]
    without_samples_n = check_samples([s.label for s in sessions], [sum(f) for f in feet_rows],
                                      [s.frames_span_n for s in sessions], feet_rows, fmt,
                                      allow_missing_samples=allow_missing_samples)
    total = sum(sum(f) for f in feet_rows)
    stride_tables, session_rows, session_days, subjects = [], [], [], {}
    bids = fmt == "bids"
    with _progress_bar(total, progress) as bar:
        for s in sessions:
            streams = s.streams()
            subj = bids_label(s.subject.label) if bids else s.subject.label
            ses = bids_label(s.label) if bids else s.label
            subjects[subj] = s.subject.cohort
            strides = s.strides()
            start = None if s.start is None else s.start.isoformat(timespec="microseconds")
            info = {"subject": subj, "session": ses, "task": s.task, "task_name": s.task_name,
                    "task_description": s.task_description, "software": software,
                    "start": start,
}
            scans = []
            for st in streams:
                written = formats.write_samples(root, fmt, subj, ses, st, info, progress=bar.update)
                files += written
                if bids:
                    scans.append((written[0].split("/", 2)[2], "n/a" if start is None else start))
            if bids:
                files += formats.write_bids_events(root, subj, ses, s.task, strides)
                files.append(formats.write_bids_scans(root, subj, ses, scans))
            stride_tables.append(labelled_strides(strides, subj, ses))
            session_rows.append({"subject": subj, "session": ses,
                                 "start": None if s.start is None else info["start"],
                                 "duration_s": s.duration_s, "strides_n": int(len(strides)),
                                 "feet": "".join(st.side for st in streams),
                                 "sample_rate_hz": max((st.sample_rate_hz for st in streams), default=np.nan),
                                 "task": s.task})
            session_days.append(s.day)
    strides_all = pd.concat(stride_tables, ignore_index=True) if stride_tables else pd.DataFrame()
    sessions_df = pd.DataFrame(session_rows)
    weekly = weekly_table(strides_all, sessions_df.assign(day=pd.Series(session_days, dtype=object)))
    subjects_df = pd.DataFrame(sorted(subjects.items()), columns=["subject", "cohort"])
    if bids:
        files += _bids_dataset_files(root, subjects_df, sessions_df, strides_all, weekly, software)
    else:
        for stem, table in (("subjects", subjects_df), ("sessions", sessions_df), ("strides", strides_all),
                            ("weekly", weekly)):
            files.append(_write_table(root, fmt, stem, table))
    files.append("manifest.json")
    formats.write_json(root, "manifest.json", manifest(
        fmt=fmt, subjects_n=len(subjects), sessions_n=len(sessions), software=software, files=files, source=source,
        extra={"samples_n": total, "sessions_without_samples_n": without_samples_n,
               "units": "column names carry units (_s, _kpa, _n, _g, _dps, _m, _fw, _fl); "
                        "sample files carry their units, rate, layout and device as metadata"}))
    return ExportResult(out=root, files=sorted(files), sessions_n=len(sessions), subjects_n=len(subjects), rows_n=total,
                        sessions_without_samples_n=without_samples_n)


def _bids_dataset_files(root: Path, subjects: pd.DataFrame, sessions: pd.DataFrame, strides: pd.DataFrame,
                        weekly: pd.DataFrame, software: str) -> list[str]:
    files = [formats.write_json(root, "dataset_description.json", {
        "Name": "Kinetic Chain insole export", "BIDSVersion": formats.BIDS_VERSION, "DatasetType": "raw",
        "GeneratedBy": [{"Name": "Kinetic Chain", "Version": software,
                         "Description": "de-identified export (kinetic export --format bids)"}]})]
    participants = subjects.rename(columns={"subject": "participant_id"})
    participants["participant_id"] = "sub-" + participants["participant_id"]
    files.append(formats.write_table_text(root, "participants.tsv", participants, sep="\t", na="n/a"))
    files.append(formats.write_json(root, "participants.json", {
        "cohort": {"Description": "study group the clinic assigned the subject to"}}))
    for subject, rows in sessions.groupby("subject", sort=True):
        table = pd.DataFrame({"session_id": "ses-" + rows["session"], "acq_time": rows["start"].fillna("n/a"),
                              "duration_s": rows["duration_s"], "strides_n": rows["strides_n"]})
        files.append(formats.write_table_text(root, f"sub-{subject}/sub-{subject}_sessions.tsv", table, sep="\t", na="n/a"))
    files.append(formats.write_json(root, "sessions.json", {
        "acq_time": {"Description": "session start, shifted per subject (see manifest.json)"},
        "duration_s": {"Description": "session length", "Units": "s"},
        "strides_n": {"Description": "strides the analytics found"}}))
    files.append(_write_readme(root))
    (root / ".bidsignore").write_text("manifest.json\n")
    files.append(".bidsignore")
    deriv = "derivatives/kinetic-gait"
    files.append(formats.write_json(root, f"{deriv}/dataset_description.json", {
        "Name": "Kinetic Chain gait analytics", "BIDSVersion": formats.BIDS_VERSION, "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "Kinetic Chain", "Version": software}]}))
    files.append(_write_table(root, "bids", f"{deriv}/strides", strides))
    files.append(_write_table(root, "bids", f"{deriv}/weekly", weekly))
    return files


def _write_readme(root: Path) -> str:
    (root / "README.md").write_text(
        "# Kinetic Chain insole export\n\n"
        "Plantar pressure (and, where the insole has one, IMU) recordings from pressure-sensing insoles, "
        "de-identified: see manifest.json for what was removed or shifted. Each insole is its own tracking "
        "system (tracksys-insoleL / insoleR); the first channel of each motion file is the sample time (LATENCY, "
        "seconds since the session's start). Gait events are in the *_events.tsv files; per-stride and weekly "
        "tables are in derivatives/kinetic-gait/.\n", encoding="utf-8")
    return "README.md"


def software_version() -> str:
    """``kinetic-chain VERSION``, the installed package's version (pyproject.toml is its one source)."""
    try:
        return f"kinetic-chain {version('kinetic-chain')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "kinetic-chain (source tree)"


def read_manifest(path: str | Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))


__all__ = [
    "WEEKLY_COLUMNS",
    "ExportError",
    "ExportResult",
    "ExportSession",
    "labelled_strides",
    "read_manifest",
    "recording_sessions",
    "select_sessions",
    "software_version",
    "weekly_table",
    "write_export",
]
