"""Research exports (issue 7): round trip, BIDS validity, de-identification, atomic output.

The sessions are real walks from the simulator, stored through Store.add_raw_batch and
closed by ProcessingService, which writes the raw Parquet archive exactly as in
production; exports read that archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_export import START_US, _prepare_db
from insole_common import metrics as C
from insole_common.calendar import day_of, iso_week
from processing.readers.auto import read_any
from research import load_session, load_strides, load_table, sessions as research_sessions
from research.deid import REMOVED, set_cohort
from research.export import ExportError, select_sessions, weekly_table, write_export
from storage.archive import RawArchive
from storage.store import PostgresStore, SQLiteStore
from tests.conftest import PG_DSN
from tests.fixtures.dashboard import STORIES, add_simulated_session, add_synthetic_session
from tests.fixtures.research import peak_memory_mb, write_archive_session
from tests.test_dashboard_data import late_walks

DAY = date(2026, 10, 6)  # a Tuesday
VALIDATOR = Path(sys.executable).with_name("bids-validator-deno")
#: a test deployment's research secret (KINETIC_RESEARCH_SECRET), made per run
RESEARCH_SECRET = secrets.token_urlsafe(32)


@pytest.fixture(autouse=True)
def research_secret_env(monkeypatch):
    """Every export here runs in a deployment with a research secret (`kinetic export` requires one)."""
    monkeypatch.setenv("KINETIC_RESEARCH_SECRET", RESEARCH_SECRET)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-site")
    store = SQLiteStore(root / "kinetic.sqlite")
    archive = RawArchive(root / "archive")

    store.migrate()
    rng = np.random.default_rng(3)
    sessions = {}
    for k, story in enumerate(STORIES[:2]):
        # device frame counters run on across sessions, as on a real insole
        ids = [add_simulated_session(store, story, DAY + timedelta(days=d), 9 + k, 0.5, walk_s=12.0, seed=k + d,
                                     archive=archive, first_seq=d * 100_000) for d in (0, 8)]
        ids.append(add_synthetic_session(store, story, DAY + timedelta(days=3), 15, 0.5, 30, rng))
        sessions[story.pseudonym] = ids
        set_cohort(store, story.pseudonym, "pilot")
    yield {"store": store, "archive": archive, "root": root, "sessions": sessions}
    store.close()


def _export(site, fmt, out, **select):
    chosen = select_sessions(site["store"], site["archive"], **select)
    if fmt == "bids":  # BIDS-Motion refuses sessions without motion data: the site's stride-only ones are left out
        chosen = [s for s in chosen if sum(st.rows_n for st in s.streams())]
    return write_export(chosen, out, fmt, software="kinetic-chain test", progress=False)


def _archive_frames(site, session_id):
    row = site["store"].query("SELECT patient, start_us FROM sessions WHERE session_id = ?", (session_id,)).iloc[0]
    paths = site["archive"].session_paths(row.patient, day_of(int(row.start_us)), session_id)
    return {side: pq.read_table(p).to_pandas() for side, p in paths.items() if p.is_file()}, int(row.start_us)


def _label_of(site, session_id):
    return site["store"].query("SELECT label FROM research_sessions WHERE session_id = ?", (session_id,)).iloc[0]["label"]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "bids"])
def test_round_trip_gives_back_every_sample(site, tmp_path, fmt):
    pat = STORIES[0].pseudonym
    result = _export(site, fmt, tmp_path / "out", patient=pat)
    assert result.sessions_n == (2 if fmt == "bids" else 3) and result.subjects_n == 1
    for session_id in site["sessions"][pat][:2]:  # the two with raw frames
        frames, start_us = _archive_frames(site, session_id)
        back = load_session(result.out, _label_of(site, session_id))
        for side, ref in frames.items():
            got = back[back["side"] == side].reset_index(drop=True)
            assert len(got) == len(ref) > 1000
            np.testing.assert_array_equal(np.round(got["t_s"].to_numpy() * 1e6).astype(np.int64),
                                          ref["t_us"].to_numpy() - start_us)
            pressure = [c for c in ref.columns if c.endswith("_kpa")]
            assert len(pressure) == 16
            for col in [*pressure, "acc_x_g", "acc_y_g", "acc_z_g", "gyr_x_dps", "gyr_y_dps", "gyr_z_dps"]:
                np.testing.assert_array_equal(got[col].to_numpy().astype(np.float32), ref[col].to_numpy(), err_msg=col)
            if fmt != "bids":
                np.testing.assert_array_equal(got["frame_index"].to_numpy(dtype=np.int64),
                                              ref["seq"].to_numpy().astype(np.int64) - int(ref["seq"].iloc[0]))
            meta = back.attrs["feet"][side]
            assert meta["sample_rate_hz"] == 100.0 and meta["units"]["p01_kpa"] == "kPa"
    strides = load_strides(result.out)
    exported = [sid for sid in site["sessions"][pat] if fmt != "bids" or not sid.startswith("fx-")]  # BIDS: with samples
    stored = sum(int(site["store"].query("SELECT COUNT(*) AS n FROM strides WHERE session_id = ?", (sid,)).iloc[0]["n"])
                 for sid in exported)
    assert len(strides) == stored > 0
    assert set(strides[C.SIDE]) == {"L", "R"}


def test_bids_export_passes_the_official_validator(site, tmp_path):
    result = _export(site, "bids", tmp_path / "bids", cohort="pilot")
    assert result.subjects_n == 2 and result.sessions_n == 4  # the sessions with raw frames
    run = subprocess.run([str(VALIDATOR), "--format", "json", "--max-rows", "-1", str(result.out)],
                         capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(run.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [], errors[:5]
    assert "motion" in json.dumps(report["summary"]["modalities"]).lower()
    # the specification's required files and fields, checked directly as well
    root = result.out
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["BIDSVersion"] and desc["Name"]
    motion = sorted(root.glob("sub-*/ses-*/motion/*_motion.tsv"))
    assert len(motion) == 8  # 2 subjects x 2 sessions with raw frames x 2 feet
    for tsv in motion:
        stem = str(tsv)[: -len("_motion.tsv")]
        channels = pd.read_csv(f"{stem}_channels.tsv", sep="\t", keep_default_na=False)
        assert list(channels.columns[:5]) == ["name", "component", "type", "tracked_point", "units"]
        assert channels["type"].iloc[0] == "LATENCY"
        assert set(channels["type"][channels["name"].str.endswith("_kpa")]) == {"MISC"}
        sidecar = json.loads(Path(f"{stem}_motion.json").read_text())
        assert sidecar["SamplingFrequency"] == 100.0 and sidecar["TaskName"]
        first = tsv.read_text().split("\n", 1)[0].split("\t")
        assert len(first) == len(channels)  # no header row, one column per channel
    events = sorted(root.glob("sub-*/ses-*/motion/*_events.tsv"))
    assert len(events) == 4
    ev = pd.read_csv(events[0], sep="\t")
    assert list(ev.columns[:3]) == ["onset", "duration", "trial_type"]


def test_no_export_contains_an_identifier(site, tmp_path):
    store = site["store"]
    identifiers = set(store.query("SELECT pseudonym FROM patients")["pseudonym"])
    identifiers |= set(store.query("SELECT session_id FROM sessions")["session_id"])
    identifiers |= set(store.query("SELECT device_id FROM raw_batches")["device_id"])
    starts = store.query("SELECT start_us FROM sessions")["start_us"]
    real_days = {day_of(int(s)) for s in starts}
    identifiers |= real_days | {d.replace("-", "") for d in real_days}
    assert len(identifiers) > 10
    for fmt in ("parquet", "csv", "bids"):
        out = _export(site, fmt, tmp_path / fmt, cohort="pilot").out
        manifest = json.loads((out / "manifest.json").read_text())
        assert set(manifest["deidentification"]["removed"]) == set(REMOVED)
        for path in out.rglob("*"):
            if not path.is_file():
                continue
            texts = [path.read_bytes().decode("utf-8", "replace")]
            if path.suffix == ".parquet":  # compressed: check what a reader sees, data and metadata
                table = pq.read_table(path)
                texts.append(table.to_pandas().to_csv())
                texts.append(str(table.schema.metadata))
            texts.append(str(path.relative_to(out)))
            for text in texts:
                found = [i for i in identifiers if i in text]
                assert not found, f"{fmt}: {path.relative_to(out)} contains {found[:3]}"


def test_dates_are_shifted_per_subject_keeping_intervals(site, tmp_path):
    out = _export(site, "csv", tmp_path / "csv", cohort="pilot").out
    sessions = load_table(out, "sessions")
    for subject, rows in sessions.groupby("subject"):
        starts = pd.to_datetime(rows["start"]).sort_values().reset_index(drop=True)
        assert starts.dt.year.between(1900, 1927).all()
        real = sorted(pd.to_datetime(site["store"].query(
            "SELECT s.start_us FROM sessions s JOIN research_subjects r ON r.patient = s.patient WHERE r.label = ?",
            (subject,))["start_us"], unit="us"))
        assert list(starts.diff().dropna()) == list(pd.Series(real).diff().dropna())  # intervals kept to the us
        assert set(starts.dt.day_of_week) == {pd.Timestamp(r).weekday() for r in real}
    shifts = site["store"].query("SELECT date_shift_days FROM research_subjects")["date_shift_days"]
    assert shifts.nunique() == len(shifts)  # per subject (random: equal by chance with p ~ 1e-3)
    # a second export of the same subjects agrees
    again = load_table(_export(site, "csv", tmp_path / "again", cohort="pilot").out, "sessions")
    pd.testing.assert_frame_equal(sessions, again)


def test_weekly_summary_is_the_median_of_the_weeks_daily_medians(site, tmp_path):
    """The export's weekly table is the service's weekly summary (processing.summaries): the median over
    the week's days of each day's median, counts summed, for every metric of the catalogue's DAILY_METRICS."""
    out = _export(site, "parquet", tmp_path / "pq", cohort="pilot").out
    strides, sessions, weekly = (load_table(out, n) for n in ("strides", "sessions", "weekly"))
    assert len(weekly) == 4  # 2 subjects x sessions on day 0/3 (one week) and day 8 (the next)
    assert list(weekly.columns) == ["subject", "iso_week", "week_start", "days_n", "sessions_n", "strides_n",
                                    *C.DAILY_METRICS]
    row = weekly.iloc[0]
    in_week = sessions[(sessions["subject"] == row["subject"])
                       & (pd.to_datetime(sessions["start"]).dt.strftime("%G-W%V") == row["iso_week"])]
    mine = strides[strides["session"].isin(in_week["session"])].merge(
        in_week.assign(day=pd.to_datetime(in_week["start"]).dt.date)[["session", "day"]], on="session")
    assert row["strides_n"] == len(mine) > 0 and row["sessions_n"] == len(in_week)
    assert row["days_n"] == mine["day"].nunique() == 2
    daily_medians = mine.groupby("day")[C.STRIDE_TIME_S].median()
    assert row[C.STRIDE_TIME_S] == pytest.approx(daily_medians.median())
    assert weekly_table(strides.iloc[0:0], sessions.iloc[0:0]).empty


def test_weekly_table_and_day_filters_count_in_the_patients_time_zone(tmp_path):
    """A walk at 23:30 UTC on Sunday is Monday's walk for a patient in Auckland: the export's day filters and its
    weekly table (ISO week of the shifted day) use the patient's day; the weekday survives the date shift."""
    store, archive = SQLiteStore(tmp_path / "k.sqlite"), RawArchive(tmp_path / "archive")
    late_walks(store, archive)
    set_cohort(store, "p-nz", "nz")
    assert select_sessions(store, archive, patient="p-nz", to_day="2026-12-13") == []
    (chosen,) = select_sessions(store, archive, patient="p-nz", from_day="2026-12-14", to_day="2026-12-14")
    assert chosen.day == chosen.subject.shift_day("2026-12-14")
    out = write_export([chosen], tmp_path / "nz", "csv", software="kinetic-chain test", progress=False).out
    weekly = load_table(out, "weekly")
    assert weekly[["iso_week", "week_start"]].values.tolist() == [list(iso_week(chosen.day))]
    assert pd.Timestamp(weekly["week_start"][0]).weekday() == 0 and date.fromisoformat(chosen.day).weekday() == 0
    assert weekly["sessions_n"].tolist() == [1] and weekly["strides_n"][0] > 20
    (utc,) = select_sessions(store, archive, patient="p-utc", from_day="2026-12-13", to_day="2026-12-13")
    assert date.fromisoformat(utc.day).weekday() == 6  # Sunday


def test_output_is_atomic(site, tmp_path):
    chosen = select_sessions(site["store"], site["archive"], patient=STORIES[1].pseudonym)
    real_streams = chosen[-1].streams

    def failing():
        streams = real_streams()

        original = streams[0].chunks

        def boom():
            yield next(iter(original()))
            raise OSError("disk full (simulated)")
        streams[0].chunks = boom
        return streams
    chosen[-1].streams = failing
    out = tmp_path / "half"
    with pytest.raises(OSError, match="disk full"):
        write_export(chosen, out, "csv", software="t", progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # an existing folder is not replaced unless asked, and then only once the new one is complete
    good = _export(site, "csv", out, patient=STORIES[1].pseudonym)
    with pytest.raises(ExportError, match="exists"):
        _export(site, "csv", out, patient=STORIES[1].pseudonym)
    before = sorted(p.name for p in out.iterdir())
    chosen[-1].streams = failing
    with pytest.raises(OSError):
        write_export(chosen, out, "csv", software="t", progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == before and good.files
    assert [p.name for p in tmp_path.iterdir()] == ["half"]


def test_cli_exports_and_explains_refusals(site, tmp_path):
    db = str(site["root"] / "kinetic.sqlite")
    arch = str(site["root"] / "archive")
    session_id = site["sessions"][STORIES[0].pseudonym][0]
    run = subprocess.run([sys.executable, "-m", "kinetic", "export", "--db", db, "--archive", arch, "--session",
                          session_id, "--format", "bids", "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "1 session(s) of 1 subject(s)" in run.stdout
    assert len(list((tmp_path / "one").glob("sub-*/ses-*/motion/*_motion.tsv"))) == 2
    for args, message in ((["--session", "no-such-session"], "nothing to export"),
                          (["--all", "--from", "2026-13-01"], "YYYY-MM-DD"),
                          (["--session", session_id], "exists")):
        run = subprocess.run([sys.executable, "-m", "kinetic", "export", "--db", db, "--archive", arch, *args,
                              "--out", str(tmp_path / "one")], capture_output=True, text=True, check=False)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)


def test_a_real_recording_exports_to_valid_bids(tmp_path):
    # the shared data folder sits beside the checkout (also when the checkout is a worktree one level deeper)
    src = next((p / "shared" / "data" / "physionet-gaitpdb" / "GaCo01_01.txt" for p in Path(__file__).resolve().parents
                if (p / "shared" / "data").is_dir()), Path("shared/data/physionet-gaitpdb/GaCo01_01.txt"))
    out = tmp_path / "gaco"
    run = subprocess.run([sys.executable, "-m", "kinetic", "export", "--recording", str(src), "--format", "bids",
                          "--out", str(out), "--progress"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "exporting: 100%" in run.stderr and "24.2k/24.2k" in run.stderr  # the progress bar, to its end
    report = json.loads(subprocess.run([str(VALIDATOR), "--format", "json", str(out)], capture_output=True,
                                       text=True, timeout=300, check=False).stdout)
    assert [i for i in report["issues"]["issues"] if i["severity"] == "error"] == []
    rec = read_any(src)
    back = load_session(out)
    for side, foot in rec.feet.items():
        got = back[back["side"] == side]
        cols = [c for c in got.columns if c.endswith("_n")]
        assert len(cols) == 8
        np.testing.assert_array_equal(got[cols].to_numpy(), foot.pressure[~np.isnan(foot.pressure).all(axis=1)])
    events = pd.read_csv(next(out.glob("sub-*/ses-*/motion/*_events.tsv")), sep="\t")
    assert (events["trial_type"] == "heel_strike").sum() > 50  # ~2 min of walking
    assert re.fullmatch(r"S[0-9a-f]{12}", back["subject"].iloc[0])


def test_an_eight_hour_session_exports_in_bounded_memory(tmp_path):
    """Issue 7: an 8-hour bilateral session exports with peak memory < 300 MB (the whole `kinetic export` process)."""
    archive = RawArchive(tmp_path / "archive")
    paths = write_archive_session(archive, hours=8.0, patient="p", session_id="s", start_us=START_US)
    rows = sum(pq.read_metadata(p).num_rows for p in paths.values())
    assert rows == 2 * 8 * 3600 * 100
    _prepare_db(tmp_path / "db.sqlite", archive, 8.0)
    for fmt in ("parquet", "bids"):
        out = tmp_path / f"out-{fmt}"
        mb = peak_memory_mb(["export", "--db", str(tmp_path / "db.sqlite"), "--archive", str(archive.root),
                             "--session", "s", "--format", fmt, "--out", str(out), "--no-progress"])
        assert mb < 300, f"{fmt}: peak {mb:.0f} MB"
        assert json.loads((out / "manifest.json").read_text())["samples_n"] == rows


def test_postgres_store_exports_what_sqlite_exports(tmp_path):
    """The same session stored in PostgreSQL and in SQLite exports the same samples and strides (CLI, --dsn)."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    pg = PostgresStore(PG_DSN, schema=schema)
    lite = SQLiteStore(tmp_path / "lite.sqlite")
    try:
        outs = []
        for name, store in (("pg", pg), ("lite", lite)):
            store.migrate()
            archive = RawArchive(tmp_path / f"archive-{name}")
            sid = add_simulated_session(store, STORIES[2], DAY, 9, 0.0, walk_s=15.0, seed=5, archive=archive)
            target = ["--dsn", PG_DSN, "--pg-schema", schema] if name == "pg" else ["--db", str(tmp_path / "lite.sqlite")]
            out = tmp_path / f"out-{name}"
            run = subprocess.run([sys.executable, "-m", "kinetic", "export", *target, "--archive", str(archive.root),
                                  "--session", sid, "--format", "parquet", "--out", str(out)],
                                 capture_output=True, text=True, check=False)
            assert run.returncode == 0, run.stderr
            outs.append(out)
        a, b = (load_session(o) for o in outs)
        cols = [c for c in a.columns if c not in ("subject", "session")]
        assert len(a) > 1000
        pd.testing.assert_frame_equal(a[cols], b[cols])
        sa, sb = (load_strides(o).drop(columns=["subject", "session"]) for o in outs)
        assert len(sa) > 5
        pd.testing.assert_frame_equal(sa, sb)
        assert a["subject"].iloc[0] == b["subject"].iloc[0]  # the same patient, the same label (keyed hash)
        assert a["session"].iloc[0] == b["session"].iloc[0]
    finally:
        pg.close()
        lite.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _kinetic_export(*args, cwd=None, env_secret: str | None = RESEARCH_SECRET):
    env = {k: v for k, v in os.environ.items() if k != "KINETIC_RESEARCH_SECRET"}
    if env_secret is not None:
        env["KINETIC_RESEARCH_SECRET"] = env_secret
    return subprocess.run([sys.executable, "-m", "kinetic", "export", *map(str, args)], capture_output=True, text=True,
                          check=False, cwd=cwd, env=env | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def test_the_same_recording_gets_the_same_labels_and_the_manifest_names_it(tmp_path):
    """Issue 20: exporting one recording twice gave two different subject labels and no reference to the source.
    Now the labels are HMAC-SHA256 of the recording's SHA-256 with the deployment's secret, and the manifest names
    the file and its SHA-256."""
    src = next(p / "shared" / "data" / "physionet-gaitpdb" / "GaCo01_01.txt" for p in Path(__file__).resolve().parents
               if (p / "shared" / "data").is_dir())
    outs = []
    for name, secret in (("a", RESEARCH_SECRET), ("b", RESEARCH_SECRET), ("other-secret", "x" * 40)):
        run = _kinetic_export("--recording", src, "--format", "csv", "--out", tmp_path / name, env_secret=secret)
        assert run.returncode == 0, run.stderr
        outs.append(load_table(tmp_path / name, "sessions")[["subject", "session"]].iloc[0].tolist())
    assert outs[0] == outs[1] and re.fullmatch(r"S[0-9a-f]{12}", outs[0][0]) and re.fullmatch(r"R[0-9a-f]{16}", outs[0][1])
    assert outs[2][0] != outs[0][0] and outs[2][1] != outs[0][1]  # a label depends on the deployment's secret
    source = json.loads((tmp_path / "a" / "manifest.json").read_text())["source"]
    assert source == {"kind": "recording", "file": "GaCo01_01.txt", "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                      "format": "gaitpdb"}
    run = _kinetic_export("--recording", src, "--format", "csv", "--out", tmp_path / "no-secret", env_secret=None)
    assert run.returncode == 2 and "KINETIC_RESEARCH_SECRET" in run.stderr and not (tmp_path / "no-secret").exists()


def test_export_of_stored_sessions_names_its_source_without_identifiers(site, tmp_path):
    db, arch = site["root"] / "kinetic.sqlite", site["root"] / "archive"
    pat = STORIES[0].pseudonym
    run = _kinetic_export("--db", db, "--archive", arch, "--patient", pat, "--from", DAY.isoformat(), "--format", "csv",
                          "--out", tmp_path / "p")
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "p" / "manifest.json").read_text()
    source = json.loads(text)["source"]
    assert source["kind"] == "database" and source["database"] == "SQLite"
    assert set(source["selection"]) == {"patient", "from_day"}
    assert pat not in text and DAY.isoformat() not in text
    assert json.loads(text)["sessions_without_samples_n"] == 1  # the stride-only fixture session (nothing stored)
    assert "1 session(s) without samples" in run.stderr
    # stored sessions need the deployment's secret too
    run = _kinetic_export("--db", db, "--archive", arch, "--all", "--out", tmp_path / "x", env_secret=None)
    assert run.returncode == 2 and "KINETIC_RESEARCH_SECRET" in run.stderr


def test_sessions_whose_samples_the_archive_lacks_are_refused(site, tmp_path):
    """Issue 20: an export pointed at the wrong archive (the demo kept none) had 0 samples and still exited 0."""
    db = site["root"] / "kinetic.sqlite"
    pat = STORIES[1].pseudonym
    (tmp_path / "empty-archive").mkdir()
    run = _kinetic_export("--db", db, "--archive", tmp_path / "empty-archive", "--patient", pat, "--format", "parquet",
                          "--out", tmp_path / "out")
    assert run.returncode == 2, run.stdout
    assert "2 of 3 sessions have frames in the database but no samples in the raw archive" in run.stderr
    assert not (tmp_path / "out").exists()
    run = _kinetic_export("--db", db, "--archive", tmp_path / "empty-archive", "--patient", pat, "--format", "parquet",
                          "--out", tmp_path / "out", "--allow-missing-samples")
    assert run.returncode == 0 and "3 session(s) without samples" in run.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["sessions_without_samples_n"] == 3


def test_a_bids_export_is_complete_or_refused(site, tmp_path):
    """Issue 20: BIDS exports of sessions without samples had events.tsv but no motion.tsv or channels.tsv and still
    passed the validator. Every session of a BIDS-Motion export now has both files per insole, or it is refused."""
    chosen = select_sessions(site["store"], site["archive"], cohort="pilot")
    with pytest.raises(ExportError, match="BIDS-Motion needs every session's motion data"):
        write_export(chosen, tmp_path / "bids", "bids", software="t", progress=False)
    assert not (tmp_path / "bids").exists()
    out = _export(site, "bids", tmp_path / "ok", cohort="pilot").out
    for events in out.glob("sub-*/ses-*/motion/*_events.tsv"):
        for side in ("L", "R"):
            stem = str(events)[: -len("_events.tsv")] + f"_tracksys-insole{side}"
            assert Path(f"{stem}_motion.tsv").stat().st_size > 0 and Path(f"{stem}_channels.tsv").is_file()


def test_sessions_lists_the_same_sessions_for_every_format(site, tmp_path):
    """Issue 20: research.sessions() gave [] for Parquet and CSV exports of sessions without samples."""
    found = {fmt: research_sessions(write_export(select_sessions(site["store"], site["archive"], cohort="pilot"),
                                                 tmp_path / fmt, fmt, software="t", progress=False).out)
             for fmt in ("parquet", "csv")}
    labels = set(site["store"].query("SELECT label FROM research_sessions")["label"])
    assert found["parquet"] == found["csv"] and len(found["csv"]) == 6 and set(found["csv"]) <= labels
    with_samples = _export(site, "bids", tmp_path / "bids", cohort="pilot").out
    for fmt in ("parquet", "csv"):  # the same sessions exported in each format: the same list
        chosen = [s for s in select_sessions(site["store"], site["archive"], cohort="pilot") if s.label in
                  research_sessions(with_samples)]
        out = write_export(chosen, tmp_path / f"{fmt}-samples", fmt, software="t", progress=False).out
        assert research_sessions(out) == research_sessions(with_samples) and len(research_sessions(out)) == 4


def test_export_never_creates_a_database(tmp_path):
    """Issue 20: `kinetic export` without --db silently created an empty kinetic.sqlite in the current folder."""
    for args in (["--all"], ["--db", tmp_path / "typo.sqlite", "--all"]):
        run = _kinetic_export(*args, "--out", tmp_path / "out", cwd=tmp_path)
        assert run.returncode == 2 and "no database at" in run.stderr and "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
