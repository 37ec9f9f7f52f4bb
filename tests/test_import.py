"""``kinetic import`` / ``kinetic flags`` / ``kinetic calibrate``: real recordings into a patient's history through
the live service's own message path, in real SQLite and PostgreSQL; clear errors with exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest

from processing.analytics import analyze
from processing.importer import import_recording
from processing.readers.auto import read_any
from processing.readers.kinetic import write_recording
from processing.summaries import daily_metrics
from simulator.changes import stretch_time
from simulator.cohort import cut_recording
from storage import patients
from storage.store import PostgresStore, SQLiteStore
from storage.strides import session_strides
from tests.conftest import PG_DSN, SHARED_DATA

GAITPDB = SHARED_DATA / "physionet-gaitpdb"
REPO = Path(__file__).resolve().parents[1]


def kinetic(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kinetic", *args], check=False, cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=300)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "kc.sqlite")
        s.migrate()
        yield s
        s.close()
        return
    schema = f"t_{uuid.uuid4().hex[:10]}"
    s = PostgresStore(PG_DSN, schema=schema)
    s.migrate()
    yield s
    s.close()
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_import_stores_what_the_analysis_finds_once(store):
    rec = read_any(GAITPDB / "GaCo22_01.txt")
    patients.register_patient(store, "imp-1", 0)
    first = import_recording(store, rec, patient="imp-1", day="2026-03-02")
    again = import_recording(store, rec, patient="imp-1", day="2026-03-02")
    assert first.stored and not again.stored and again.session_id == first.session_id
    direct = analyze(rec).strides
    stored = session_strides(store, first.session_id)
    assert first.strides_n == len(stored) == len(direct)
    np.testing.assert_allclose(np.sort(stored["heel_strike_s"].to_numpy(float)),
                               np.sort(direct["heel_strike_s"].to_numpy(float)), atol=0.011)
    day = store.daily_summaries("imp-1")
    assert list(day["day"].astype(str)) == ["2026-03-02"] and int(day["strides_n"].iloc[0]) == len(direct)
    want = daily_metrics(direct)
    got = day["metrics"].iloc[0]
    for key in ("cadence_steps_per_min", "cop_ml_mean_fw_L", "heel_load_fraction_R", "stance_time_s_L"):
        assert got[key] == pytest.approx(want[key], rel=0.01, abs=1e-3), key
    # a second recording the same day is a second session of that day, after the first
    import_recording(store, cut_recording(rec, 0.0, 60.0), patient="imp-1", day="2026-03-02")
    assert int(store.daily_summaries("imp-1")["sessions_n"].iloc[0]) == 2


def test_kinetic_import_then_flags_show_slowing_with_evidence(tmp_path):
    """Days of a real walk imported (the first and the last through the CLI, the others through the function
    behind it), the same walk 10 % slower from day 13: `kinetic flags --json` shows the slowing (no IMU, no
    calibration) with its evidence."""
    rec = read_any(GAITPDB / "GaCo17_01.txt")
    rng = np.random.default_rng(3)
    db = str(tmp_path / "kc.sqlite")
    store = SQLiteStore(db)
    store.migrate()
    for i in range(24):
        start = float(rng.uniform(0, 70))
        factor = (1.0 if i < 12 else 1.10) * float(np.exp(0.01 * rng.normal()))
        day_rec = stretch_time(cut_recording(rec, start, start + 50), factor)
        day = f"2026-04-{i + 1:02d}"
        if i in (0, 23):
            write_recording(day_rec, tmp_path / f"day{i}")
            r = kinetic("import", str(tmp_path / f"day{i}"), "--patient", "imp-2", "--day", day, "--db", db,
                        "--new-patient", cwd=tmp_path)
            assert r.returncode == 0 and "strides" in r.stdout, r.stderr
        else:
            import_recording(store, day_rec, patient="imp-2", day=day)
    out = kinetic("flags", "--patient", "imp-2", "--db", db, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    flags = json.loads(out.stdout)["flags"]
    raised = [f for f in flags if f["state"] == "raised"]
    assert {f["kind"] for f in raised} == {"slowing"}
    ev = raised[-1]["evidence"]
    assert ev["direction"] == "down" and "2026-04-13" <= ev["onset_day"] <= "2026-04-16"
    assert ev["corroborating"]["stride_time_s"]["current"] > ev["corroborating"]["stride_time_s"]["baseline"]
    text = kinetic("flags", "--patient", "imp-2", "--db", db, "--active", cwd=tmp_path)
    assert "slowing" in text.stdout and "(open)" in text.stdout


def test_calibrate_gives_stride_length_without_imu(tmp_path):
    db = str(tmp_path / "kc.sqlite")
    walk = str(GAITPDB / "GaCo22_01.txt")
    r = kinetic("calibrate", walk, "--distance-m", "180", "--patient", "imp-3", "--db", db, cwd=tmp_path)
    assert r.returncode == 3 and "unknown patient" in r.stderr and "Traceback" not in r.stderr
    assert kinetic("import", walk, "--patient", "imp-3", "--day", "2026-05-01", "--db", db, "--new-patient",
                   cwd=tmp_path).returncode == 0
    r = kinetic("calibrate", walk, "--distance-m", "180", "--patient", "imp-3", "--db", db, cwd=tmp_path)
    assert r.returncode == 0 and "walk ratio 0.007" in r.stdout
    bad = kinetic("calibrate", "--height-m", "175", "--patient", "imp-3", "--db", db, cwd=tmp_path)
    assert bad.returncode == 2 and "height" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("args, code, words", [
    (["import", "{walk}", "--patient", "imp-4", "--day", "2026-02-30", "--new-patient"], 2, "not a calendar day"),
    (["import", "{walk}", "--patient", "imp-4", "--day", "2026/03/01", "--new-patient"], 2, "not a calendar day"),
    (["import", "{other}", "--patient", "imp-4", "--day", "2026-03-01", "--new-patient"], 2, "unknown recording"),
    (["import", "{walk}", "--patient", "imp-4", "--day", "2026-03-01"], 3, "unknown patient"),
    (["flags", "--patient", "nobody", "--json"], 3, "unknown patient"),
])
def test_clear_errors(tmp_path, args, code, words):
    other = tmp_path / "notes.txt"
    other.write_text("not a recording\n")
    argv = [a.format(walk=GAITPDB / "GaCo22_01.txt", other=other) for a in args]
    r = kinetic(*argv, "--db", str(tmp_path / "kc.sqlite"), cwd=tmp_path)
    assert r.returncode == code and words in r.stderr and "Traceback" not in r.stderr, r.stderr
