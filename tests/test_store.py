"""One suite, two real databases: SQLite (file) and PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import psycopg
import pytest

from insole_common.codec import Batch, PressureUnit
from processing.store import MIGRATIONS, PostgresStore, SQLiteStore
from tests.conftest import PG_DSN


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "kc.sqlite")
        yield s
        s.close()
        return
    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        s = PostgresStore(PG_DSN, schema=schema)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_DSN} is not reachable ({exc}); start it (make test does) — not skipping")
    yield s
    s.close()
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def batch(device: str, first_seq: int, n: int, side: str = "L", value: int = 0) -> Batch:
    return Batch(
        device_id=device, side=side, sample_rate_hz=100.0, first_seq=first_seq, device_time_us=first_seq * 10_000,
        collector_time_us=1_800_000_000_000_000 + first_seq * 10_000,
        pressure_raw=(np.arange(n * 16).reshape(n, 16) + value).astype(np.uint16), layout_id=1,
        pressure_unit=PressureUnit.KPA, pressure_scale=0.1,
    )


def test_migrations_are_versioned_and_idempotent(store) -> None:
    assert store.migrate() == len(MIGRATIONS)
    assert store.migrate() == len(MIGRATIONS)
    versions = store.query("SELECT version FROM schema_migrations ORDER BY version")["version"].tolist()
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_raw_frames_are_stored_exactly_once(store) -> None:
    store.migrate()
    store.open_session("s1", "p1", 0, {"L": "d"})
    assert store.add_raw_batch(batch("d", 0, 50), "p1", "s1").accepted_frames_n == 50
    again = store.add_raw_batch(batch("d", 0, 50), "p1", "s1")
    assert (again.accepted_frames_n, again.duplicate_frames_n) == (0, 50)
    # a batch overlapping the stored one at both ends keeps only its new frames
    partial = store.add_raw_batch(batch("d", 40, 30), "p1", "s1")
    assert (partial.accepted_frames_n, partial.duplicate_frames_n) == (20, 10)
    store.add_raw_batch(batch("d", 100, 50), "p1", "s1")
    mid = store.add_raw_batch(batch("d", 60, 60), "p1", "s1")  # covers 60..119: 70..99 new
    assert mid.accepted_frames_n == 30
    seqs = [s for b in store.session_batches("s1") for s in b.seqs.tolist()]
    assert seqs == list(range(0, 150))
    # the kept frames are the right ones: frame 70 came from the batch that started at 60
    by_first = {b.first_seq: b for b in store.session_batches("s1")}
    np.testing.assert_array_equal(by_first[70].pressure_raw[0], batch("d", 60, 60).pressure_raw[10])


def test_sessions_open_close_once(store) -> None:
    store.migrate()
    assert store.open_session("s1", "p1", 10, {"L": "a", "R": "b"}) is True
    assert store.open_session("s1", "p1", 10, {}) is False
    assert store.close_session("s1", 20, "stopped") is True
    assert store.close_session("s1", 30, "stopped") is False
    row = store.query("SELECT state, end_us, close_reason FROM sessions WHERE session_id = ?", ("s1",)).iloc[0]
    assert (row.state, int(row.end_us), row.close_reason) == ("closed", 20, "stopped")


def test_results_replace_and_summaries_upsert(store) -> None:
    store.migrate()
    store.open_session("s1", "p1", 0, {})
    strides = pd.DataFrame({"side": ["L", "R"], "heel_strike_s": [1.0, 1.5], "stride_time_s": [1.1, float("nan")]})
    store.save_session_results("s1", "p1", "2026-11-24", strides, {"cadence_spm": 108.0, "bad": float("nan")})
    store.save_session_results("s1", "p1", "2026-11-24", strides.iloc[:1], {"cadence_spm": 110.0})
    assert store.query("SELECT COUNT(*) AS n FROM strides").iloc[0]["n"] == 1
    summary = store.query("SELECT strides_n, summary_json FROM session_summaries").iloc[0]
    assert summary.strides_n == 1 and '"cadence_spm": 110.0' in summary.summary_json
    store.save_daily_summary("p1", "2026-11-24", 1, 1, {"x": 1.0})
    store.save_daily_summary("p1", "2026-11-24", 2, 5, {"x": 2.0})
    day = store.query("SELECT sessions_n, strides_n FROM daily_summaries").iloc[0]
    assert (day.sessions_n, day.strides_n) == (2, 5)


def test_rejections_are_audited(store) -> None:
    store.migrate()
    store.record_rejection(5, "kc/v1/00/p/raw/L", "truncated", "payload is 3 bytes", b"abc")
    store.record_rejection(6, "kc/v1/00/p/raw/L", "bad_checksum", "CRC", None)
    rows = store.query("SELECT id, reason, payload_head FROM rejections ORDER BY id")
    assert rows["reason"].tolist() == ["truncated", "bad_checksum"]
    assert bytes(rows["payload_head"][0]) == b"abc" and rows["id"][1] > rows["id"][0]


def test_clinical_tables_and_execute(store) -> None:
    store.migrate()
    store.open_session("s1", "p1", 0, {})
    assert store.execute("INSERT INTO accounts (username, role, password_hash, created_us) VALUES (?, ?, ?, ?)",
                         ("ther1", "therapist", "x", 1)) == 1
    store.execute("INSERT INTO therapist_patients (therapist, patient) VALUES (?, ?)", ("ther1", "p1"))
    store.execute("INSERT INTO flags (patient, kind, metric, state, day, baseline, current, threshold, effect_size, "
                  "days_n, evidence_json, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  ("p1", "lateral_shift", "cop_ml_mean_fw", "raised", "2026-11-24", 0.02, 0.07, 0.02, 3.1, 4, "{}", 5))
    assert store.query("SELECT kind FROM flags")["kind"].tolist() == ["lateral_shift"]
    with pytest.raises(Exception):  # the role is constrained
        store.execute("INSERT INTO accounts (username, role, password_hash, created_us) VALUES (?, ?, ?, ?)",
                      ("x", "superuser", "x", 1))
