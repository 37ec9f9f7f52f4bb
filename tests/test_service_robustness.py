"""Wire-legal but hostile input never stops the processing service (found in review)."""

from __future__ import annotations

import time

import numpy as np

from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from insole_common.messages import SessionMessage
from processing.service import ProcessingService
from storage.store import SQLiteStore

T0_US = 1_800_000_000_000_000


def batch(device: str, first_seq: int, *, time_us: int = T0_US, side: str = "L") -> bytes:
    return encode_batch(Batch(
        device_id=device, side=side, sample_rate_hz=100.0, first_seq=first_seq, device_time_us=0,
        collector_time_us=time_us, pressure_raw=np.full((50, 16), 100, np.uint16), layout_id=1,
        pressure_unit=PressureUnit.KPA, pressure_scale=0.1))


def session(patient: str, event: str, sid: str, time_us: int = T0_US) -> tuple[str, bytes]:
    return topics.session_topic(patient), SessionMessage(event=event, session_id=sid, patient=patient,
                                                         time_us=time_us).to_json()


def test_out_of_range_numbers_are_rejected_and_the_service_goes_on(tmp_path) -> None:
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), live_strides=False)
    raw = topics.raw_topic("p1", "L")
    svc.handle(raw, batch("p1-L", 2**63))  # u64 on the wire, beyond the store's signed BIGINT
    svc.handle(*session("p1", "start", "s-far", time_us=10**20))  # beyond any datetime
    svc.handle(raw, batch("p1-L", 0, time_us=2**62))
    svc.handle("kc/v1/²³/p1/raw/L", batch("p1-L", 0))  # non-ASCII digits in the partition
    assert svc.stats.rejected == {"implausible_value": 3, "bad_topic": 1}
    svc.handle(raw, batch("p1-L", 50))  # good data afterwards is stored
    assert svc.stats.frames_accepted_n == 50
    assert svc.store.query("SELECT COUNT(*) AS n FROM rejections").iloc[0]["n"] == 4


def test_a_huge_sequence_jump_is_rejected_not_stored(tmp_path) -> None:
    # 2**40 frames in an hour at 100 Hz: more than the device's clock allows (issue 21: it used to be stored and
    # leave the session unanalysed as "session_too_long")
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"))
    svc.handle(*session("p2", "start", "s-jump"))
    svc.handle(topics.raw_topic("p2", "L"), batch("p2-L", 0))
    svc.handle(topics.raw_topic("p2", "L"), batch("p2-L", 2**40, time_us=T0_US + 3_600_000_000))
    svc.handle(topics.raw_topic("p2", "L"), batch("p2-L", 360_000, time_us=T0_US + 3_600_000_000))  # plausible
    svc.handle(*session("p2", "stop", "s-jump", time_us=T0_US + 3_700_000_000))
    assert svc.stats.rejected == {"sequence_jump": 1} and svc.stats.frames_accepted_n == 100
    summary = svc.store.query("SELECT summary_json FROM session_summaries WHERE session_id = 's-jump'")
    assert "session_too_long" not in summary["summary_json"][0]


def test_replayed_start_does_not_reopen_a_closed_session(tmp_path) -> None:
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), analyze_on_close=False)
    svc.handle(*session("p3", "start", "s-once"))
    svc.handle(*session("p3", "stop", "s-once"))
    svc.handle(*session("p3", "start", "s-once"))  # a redelivered start
    svc.handle(topics.raw_topic("p3", "L"), batch("p3-L", 0))
    sessions = svc.store.query("SELECT session_id, state FROM sessions ORDER BY session_id")
    assert dict(zip(sessions["session_id"], sessions["state"], strict=False))["s-once"] == "closed"
    owner = svc.store.query("SELECT DISTINCT session_id FROM raw_batches")["session_id"].tolist()
    assert owner != ["s-once"]  # the new data went to a new (implicit) session


def test_a_restart_does_not_close_open_sessions_at_once(tmp_path) -> None:
    db = tmp_path / "kc.sqlite"
    first = ProcessingService(SQLiteStore(db), analyze_on_close=False, inactivity_s=300)
    first.handle(*session("p4", "start", "s-long", time_us=T0_US - 10**10))  # started hours "ago"
    first.handle(topics.raw_topic("p4", "L"), batch("p4-L", 0, time_us=T0_US - 10**10))
    again = ProcessingService(SQLiteStore(db), analyze_on_close=False, inactivity_s=300)
    again.close_idle_sessions()
    assert again.store.query("SELECT state FROM sessions").iloc[0]["state"] == "open"
    again.close_idle_sessions(time.monotonic() + 301)  # then inactivity does close it, at its last data
    row = again.store.query("SELECT state, end_us, close_reason FROM sessions").iloc[0]
    assert (row.state, row.close_reason) == ("closed", "inactivity") and int(row.end_us) == T0_US - 10**10 + 500_000
