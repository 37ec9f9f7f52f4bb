"""One suite, two real databases: SQLite (file) and PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid

import numpy as np
import pandas as pd
import psycopg
import pytest

from insole_common import topics
from insole_common.calendar import iso_week
from insole_common.codec import Batch, PressureUnit, encode_batch
from insole_common.errors import ValidationError
from insole_common.messages import SessionMessage
from processing.service import ProcessingService
from processing.summaries import backfill_weekly_summaries, update_weekly_summary
from simulator import SimulationParams, simulate
from storage import raw as raw_mod, store as store_mod
from storage.patients import patient_time_zone, set_patient_time_zone
from storage.store import MAX_FRAMES, MIGRATIONS, PostgresStore, RawOverlapError, SQLiteStore, split_raw_rows
from tests.conftest import PG_DSN
from tests.test_live_strides import session_message, walk_messages


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
    if isinstance(store, PostgresStore):  # migration 6: raw payloads out of line, not compressed ('e')
        storage = store.query("SELECT attstorage FROM pg_attribute WHERE attrelid = 'raw_batches'::regclass "
                              "AND attname = 'payload'")["attstorage"].tolist()
        assert storage == ["e"]


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
    assert seqs == list(range(150))
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
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.CheckViolation)):  # the role is constrained
        store.execute("INSERT INTO accounts (username, role, password_hash, created_us) VALUES (?, ?, ?, ?)",
                      ("x", "superuser", "x", 1))


def test_hot_path_inserts_and_live_strides(store) -> None:

    store.migrate()
    store.open_session("s1", "p1", 0, {"L": "d"})
    assert store.raw_end_seq("d") is None
    store.add_raw_batch(batch("d", 0, 50), "p1", "s1")
    rows = [("d", seq, 50, "s1", "L", 1_800_000_000_000_000 + seq * 10_000, encode_batch(batch("d", seq, 50)))
            for seq in (50, 100, 150)]
    store.add_raw_payloads(rows)
    assert store.raw_end_seq("d") == 200
    assert [s for b in store.session_batches("s1") for s in b.seqs.tolist()] == list(range(200))
    with pytest.raises(RawOverlapError), store.transaction():  # a batch stored twice is refused, never kept twice
        store.add_raw_payloads(rows[:1])
    assert store.raw_end_seq("d") == 200
    live = [("s1", "L", 1.0 + k, "p1", 1.6 + k, 2.0 + k, 1.0, 0.6, 0.4, 7) for k in range(3)]
    store.add_live_strides(live)
    store.add_live_strides(live[1:])  # stored already: left as it is
    got = store.query("SELECT heel_strike_s, next_heel_strike_s FROM live_strides ORDER BY heel_strike_s")
    assert got["heel_strike_s"].tolist() == [1.0, 2.0, 3.0] and got["next_heel_strike_s"].tolist() == [2.0, 3.0, 4.0]


def raw_row(device: str, seq: int, sid: str = "s1") -> tuple:
    """A hot-path row for :meth:`Store.add_raw_payloads`: a 50-frame batch of ``device`` ("d" left, else right)."""
    side = "L" if device == "d" else "R"
    b = batch(device, seq, 50, side=side, value=seq)
    return (device, seq, 50, sid, side, b.collector_time_us, encode_batch(b))


def test_two_writers_of_one_device_wait_for_each_other(store) -> None:
    """A second writer (a misassigned worker) storing a batch inside a run another writer has not committed yet
    waits for that commit, then sees the run and refuses its batch: stored once, not twice."""
    store.migrate()
    store.open_session("s1", "p1", 0, {"L": "d"})
    store.add_raw_batch(batch("d", 0, 50), "p1", "s1")
    other = SQLiteStore(store.path) if isinstance(store, SQLiteStore) else PostgresStore(PG_DSN, schema=store.schema)
    outcome = []

    def second_writer() -> None:
        try:
            with other.transaction():
                other.add_raw_payloads([raw_row("d", 250)])
            outcome.append("stored")
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome.append(exc)

    try:
        with store.transaction():
            store.add_raw_payloads([raw_row("d", seq) for seq in range(50, 500, 50)])
            t = threading.Thread(target=second_writer)
            t.start()
            t.join(0.5)
            assert t.is_alive() and not outcome  # waiting for this transaction
        t.join(20)
    finally:
        other.close()
    assert len(outcome) == 1 and isinstance(outcome[0], RawOverlapError), outcome
    seqs = [s for b in store.session_batches("s1") for s in b.seqs.tolist()]
    assert seqs == list(range(500))


def test_consecutive_batches_share_a_row_and_come_back_one_by_one(store) -> None:
    """The hot path stores a run of consecutive batches of a device as one row (up to MAX_FRAMES frames); every
    batch comes back intact, exactly once, and overlaps with the inside of a run are still refused."""
    row = raw_row
    store.migrate()
    store.open_session("s1", "p1", 0, {"L": "d", "R": "e"})
    d_seqs = list(range(0, 1100, 50))  # 22 batches: rows of 20 (MAX_FRAMES) and 2
    e_seqs = [s for s in range(0, 1150, 50) if s != 500]  # a gap: rows of 10 and 12
    rows = [row(dev, s) for k in range(22) for dev, seqs in (("d", d_seqs), ("e", e_seqs)) for s in seqs[k : k + 1]]
    store.add_raw_payloads(rows)
    stored = store.query("SELECT device_id, first_seq, n_frames FROM raw_batches ORDER BY device_id, first_seq")
    assert stored.values.tolist() == [["d", 0, 1000], ["d", 1000, 100], ["e", 0, 500], ["e", 550, 600]]
    assert MAX_FRAMES == 1000
    every = split_raw_rows(store.query("SELECT device_id, payload FROM raw_batches ORDER BY device_id, first_seq"))
    assert every["payload"].tolist() == [r[6] for r in sorted(rows)]  # byte for byte, once each
    assert [(b.device_id, b.first_seq) for b in store.session_batches("s1")] == [(r[0], r[1]) for r in sorted(rows)]
    # the latest batch is e's 1100, though d's last row starts later (1000 > 550)
    assert (store.latest_session_batch("s1").device_id, store.latest_session_batch("s1").first_seq) == ("e", 1100)
    # a batch inside a run (no row starts there) is refused as a whole group, and nothing of it is kept
    with pytest.raises(RawOverlapError, match="d: frames up to 1099 are stored"):
        store.add_raw_payloads([row("e", 1150), row("d", 1025)])
    assert store.raw_end_seq("e") == 1150 and len(store.query("SELECT first_seq FROM raw_batches")) == 4
    # the one-by-one path sees the inside of runs: duplicates there are dropped, new frames kept
    assert store.add_raw_batch(batch("d", 500, 50), "p1", "s1").duplicate_frames_n == 50
    late = store.add_raw_batch(batch("d", 1075, 50), "p1", "s1")
    assert (late.accepted_frames_n, late.duplicate_frames_n) == (25, 25)
    assert store.add_raw_batch(batch("e", 500, 50, side="R"), "p1", "s1").accepted_frames_n == 50  # the gap
    for dev in "de":
        seqs = [s for b in store.session_batches("s1") if b.device_id == dev for s in b.seqs.tolist()]
        assert seqs == list(range(1125 if dev == "d" else 1150))
    # a new session starts a new row even where the sequence goes on
    store.open_session("s2", "p1", 5, {"L": "d"})
    store.add_raw_payloads([row("d", 1125), row("d", 1175, "s2")])
    assert [b.first_seq for b in store.session_batches("s2")] == [1175]


def test_weekly_summaries_follow_the_iso_week(store) -> None:

    store.migrate()
    assert iso_week("2026-12-31") == ("2026-W53", "2026-12-28")  # a Thursday: the week belongs to 2026
    assert iso_week("2027-01-03") == ("2026-W53", "2026-12-28")
    assert iso_week("2027-01-04") == ("2027-W01", "2027-01-04")
    days = {"2026-12-29": (1, 40, 1.10, 20), "2026-12-31": (2, 60, 1.20, None), "2027-01-03": (1, 30, 1.40, 10),
            "2027-01-05": (1, 50, 1.00, 25)}
    for day, (sessions_n, strides_n, stride_time_s, strides_l_n) in days.items():
        store.save_daily_summary("p1", day, sessions_n, strides_n,
                                 {"stride_time_s": stride_time_s, "cadence_steps_per_min": None,
                                  "strides_L_n": strides_l_n})
    for day in days:
        update_weekly_summary(store, "p1", day)
        update_weekly_summary(store, "p1", day)  # idempotent
    weeks = store.query("SELECT week, week_start, days_n, sessions_n, strides_n, metrics_json FROM weekly_summaries "
                        "ORDER BY week")
    assert weeks["week"].tolist() == ["2026-W53", "2027-W01"]
    assert weeks["week_start"].tolist() == ["2026-12-28", "2027-01-04"]
    assert weeks["days_n"].tolist() == [3, 1] and weeks["sessions_n"].tolist() == [4, 1]
    assert weeks["strides_n"].tolist() == [130, 50]
    m = json.loads(weeks["metrics_json"][0])
    # the median of the daily values (as the dashboard's weekly trend); counts summed; no value stays null
    assert m["stride_time_s"] == pytest.approx(1.20) and m["strides_L_n"] == 30 and m["cadence_steps_per_min"] is None
    store.execute("DELETE FROM weekly_summaries")  # e.g. days stored before migration 4
    assert backfill_weekly_summaries(store) == 2 and backfill_weekly_summaries(store) == 0
    assert store.query("SELECT week, strides_n FROM weekly_summaries ORDER BY week")["strides_n"].tolist() == [130, 50]


def test_closing_sessions_fills_daily_and_weekly_summaries(store) -> None:

    sim = simulate(SimulationParams(schedule=(("standing", 2.0), ("walking", 20.0)), imu=True), seed=3)
    service = ProcessingService(store, live_strides=True)
    service.detection_clock = "data"
    base_us = 1_797_192_000_000_000  # 2026-12-13 20:00 UTC, a Sunday (ISO week 50); the next day starts week 51
    for k, day_us in enumerate((base_us, base_us + 3600 * 1_000_000, base_us + 86_400 * 1_000_000)):
        messages = [(topics.session_topic("pw"), SessionMessage(event="start", session_id=f"s{k}", patient="pw",
                                                                time_us=day_us).to_json())]
        messages += walk_messages(sim, "pw", start_us=day_us, seq0=k * 100_000)
        messages.append((topics.session_topic("pw"), SessionMessage(event="stop", session_id=f"s{k}", patient="pw",
                                                                    time_us=day_us + 30_000_000).to_json()))
        with store.transaction():
            service.handle_group(messages)
    assert service.stats.sessions_closed_n == 3 and service.stats.rejected_n == 0
    daily = store.query("SELECT day, sessions_n, strides_n FROM daily_summaries ORDER BY day")
    weekly = store.query("SELECT week, days_n, sessions_n, strides_n FROM weekly_summaries ORDER BY week")
    assert daily["day"].tolist() == ["2026-12-13", "2026-12-14"]
    assert weekly["week"].tolist() == ["2026-W50", "2026-W51"]
    assert weekly["sessions_n"].tolist() == [2, 1] and weekly["days_n"].tolist() == [1, 1]
    assert weekly["strides_n"].tolist() == daily["strides_n"].tolist() and weekly["strides_n"].min() > 20
    assert store.query("SELECT COUNT(*) AS n FROM live_strides").iloc[0]["n"] == 0  # replaced at close


def test_session_batches_stay_apart_when_a_late_batch_joins_the_next_session(store) -> None:
    """A batch belongs to the session open when it arrived: a late one of session 1 that arrives during session 2
    is stored under session 2, inside session 1's sequence range. Each session still gets exactly its own."""

    store.migrate()
    store.open_session("s1", "p1", 0, {"L": "d", "R": "e"})
    for seq in (0, 50, 150):  # 100..149 is late
        store.add_raw_batch(batch("d", seq, 50), "p1", "s1")
        store.add_raw_batch(batch("e", seq, 50, side="R"), "p1", "s1")
    store.close_session("s1", 10, "stopped")
    store.open_session("s2", "p1", 20, {"L": "d"})
    store.add_raw_batch(batch("d", 300, 50), "p1", "s2")
    store.add_raw_batch(batch("d", 100, 50), "p1", "s2")  # the late one
    store.add_raw_payloads([("d", 350, 50, "s2", "L", 1_800_000_003_500_000, encode_batch(batch("d", 350, 50)))])
    s1 = [(b.side, b.first_seq) for b in store.session_batches("s1")]
    s2 = [(b.side, b.first_seq) for b in store.session_batches("s2")]
    assert s1 == [("L", 0), ("L", 50), ("L", 150), ("R", 0), ("R", 50), ("R", 150)]
    assert s2 == [("L", 100), ("L", 300), ("L", 350)]
    ranges = store.query("SELECT session_id, device_id, first_seq, end_seq FROM raw_session_ranges "
                         "ORDER BY session_id, device_id")
    assert ranges.values.tolist() == [["s1", "d", 0, 200], ["s1", "e", 0, 200], ["s2", "d", 100, 400]]
    assert store.latest_session_batch("s2").first_seq == 350
    assert store.latest_session_batch("s1").first_seq == 150
    assert store.latest_session_batch("none") is None


def test_migration_5_keeps_the_sessions_of_an_existing_archive(store, monkeypatch) -> None:
    """A database at schema 4 (raw batches indexed by session) upgrades to per-session device ranges."""

    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:4])
    assert store.migrate() == 4
    store.open_session("s1", "p1", 0, {"L": "d"})
    store.open_session("s2", "p1", 5, {"L": "d"})
    for seq, sid in ((0, "s1"), (50, "s1"), (100, "s2"), (150, "s2"), (200, "s1")):
        store.execute("INSERT INTO raw_batches (device_id, first_seq, n_frames, session_id, side, collector_time_us, "
                      "payload) VALUES (?, ?, ?, ?, ?, ?, ?)", ("d", seq, 50, sid, "L", seq, encode_batch(batch("d", seq, 50))))
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:5])
    assert store.migrate() == 5
    assert [b.first_seq for b in store.session_batches("s1")] == [0, 50, 200]
    assert [b.first_seq for b in store.session_batches("s2")] == [100, 150]
    if isinstance(store, SQLiteStore):  # no index by session is left, and the query walks the primary key
        names = store.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'raw_batches'")["name"]
        assert "raw_batches_session" not in names.tolist()
        plan = " ".join(store.query("EXPLAIN QUERY PLAN SELECT r.payload " + raw_mod._SESSION_RAW,
                                    ("s1",))["detail"].astype(str))
        assert "USING INDEX sqlite_autoindex_raw_batches_1 (device_id=? AND first_seq>? AND first_seq<?)" in plan, plan


def test_a_patient_has_a_time_zone(store) -> None:
    """Migration 7: every patient's days are counted in a stored IANA time zone, UTC unless set."""

    store.migrate()
    store.open_session("s1", "p1", 0, {"L": "d"})
    assert store.patient_time_zone("p1") == "UTC" and patient_time_zone(store, "nobody") == "UTC"
    set_patient_time_zone(store, "p1", "Pacific/Auckland")
    store.set_patient_time_zone("p2", "Europe/Berlin")  # not stored yet: created with its zone
    assert store.patient_time_zone("p1") == "Pacific/Auckland" and patient_time_zone(store, "p2") == "Europe/Berlin"
    with pytest.raises(ValidationError):
        store.set_patient_time_zone("p1", "Mars/Olympus_Mons")
    assert store.patient_time_zone("p1") == "Pacific/Auckland"


def test_typed_reads_of_sessions_and_summaries(store) -> None:
    """What the processing service reads of sessions, live strides and summaries, without SQL of its own."""
    store.migrate()
    assert store.session("s1") is None and store.open_sessions() == []
    store.open_session("s1", "p1", 5, {"L": "d"})
    store.open_session("s2", "p1", 9, {"L": "d"})
    store.close_session("s2", 10, "stopped")
    assert store.session("s2").state == "closed" and store.session("s1").start_us == 5
    assert [s.session_id for s in store.open_sessions()] == ["s1"]
    assert store.last_live_heel_strike_s("s1", "L") is None
    store.add_live_strides([("s1", "L", hs, "p1", hs + 0.6, hs + 1.1, 1.1, 0.6, 0.5, 0) for hs in (1.0, 2.5)])
    assert store.last_live_heel_strike_s("s1", "L") == 2.5 and store.last_live_heel_strike_s("s1", "R") is None
    store.delete_live_strides("s1")
    assert store.last_live_heel_strike_s("s1", "L") is None
    assert not store.session_has_results("s1") and store.day_strides("p1", "2026-01-01").empty
    strides = pd.DataFrame({"side": ["L", "R"], "heel_strike_s": [1.0, 1.5], "stride_time_s": [1.1, float("nan")]})
    store.save_session_results("s1", "p1", "2026-01-01", strides, {"x": 1})
    assert store.session_has_results("s1") and store.day_sessions_n("p1", "2026-01-01") == 1
    day = store.day_strides("p1", "2026-01-01")
    assert day["side"].tolist() == ["L", "R"] and day["stride_time_s"].isna().tolist() == [False, True]
    for d, n in (("2026-01-01", 2), ("2026-01-02", 3), ("2026-01-05", 4)):
        store.save_daily_summary("p1", d, 1, n, {"stride_time_s": n / 2})
    rows = store.daily_summaries("p1", "2026-01-02")
    assert rows["day"].tolist() == ["2026-01-02", "2026-01-05"] and rows["strides_n"].tolist() == [3, 4]
    assert rows["metrics"][0] == {"stride_time_s": 1.5}
    assert store.daily_summaries("p1", last_day="2026-01-01")["day"].tolist() == ["2026-01-01"]
    assert sorted(store.daily_summary_days())[0] == ("p1", "2026-01-01") and store.weekly_summary_weeks() == set()


def test_a_session_belongs_to_the_day_and_week_of_the_patients_time_zone(store) -> None:
    """The same walk at 23:30 UTC on a Sunday: a UTC patient's day and ISO week are that Sunday's; a patient in
    Pacific/Auckland (UTC+13 in December) walked at 12:30 on Monday, the next day and the next week."""

    sim = simulate(SimulationParams(schedule=(("standing", 2.0), ("walking", 20.0)), imu=True), seed=3)
    service = ProcessingService(store, live_strides=False)
    store.set_patient_time_zone("p-nz", "Pacific/Auckland")
    start_us = 1_797_204_600_000_000  # 2026-12-13 23:30 UTC, a Sunday (ISO week 50)
    for patient in ("p-utc", "p-nz"):
        messages = [session_message(patient, "start", f"s-{patient}", start_us)]
        messages += walk_messages(sim, patient, start_us=start_us)
        messages.append(session_message(patient, "stop", f"s-{patient}", start_us + 30_000_000))
        with store.transaction():
            service.handle_group(messages)
    assert service.stats.sessions_closed_n == 2 and service.stats.rejected_n == 0
    days = store.query("SELECT patient, day FROM session_summaries ORDER BY patient")
    assert days.values.tolist() == [["p-nz", "2026-12-14"], ["p-utc", "2026-12-13"]]
    assert store.query("SELECT DISTINCT patient, day FROM strides ORDER BY patient").values.tolist() == \
        days.values.tolist()
    weeks = store.query("SELECT patient, week, week_start FROM weekly_summaries ORDER BY patient")
    assert weeks.values.tolist() == [["p-nz", "2026-W51", "2026-12-14"], ["p-utc", "2026-W50", "2026-12-07"]]
    daily = store.daily_summaries("p-nz")
    assert daily["day"].tolist() == ["2026-12-14"] and daily["strides_n"][0] > 20
