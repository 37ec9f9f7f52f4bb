"""A session's stop delivered before its last raw batches, or its start after its first ones (NATS orders messages
per subscription only, and the processing worker subscribes to raw and session topics separately): the session
still gets all its frames and strides, and no implicit ``auto-`` session is left for the batches out of order.

The messages are the collector's own (its outbox after a run with no broker), published through the real
Mosquitto in a changed order; the reference is the same messages handled in the collector's order.
"""

from __future__ import annotations

import asyncio
import uuid

import pandas as pd
import psycopg
import pytest

from collector.service import Collector, CollectorConfig
from insole_common import topics
from insole_common.calendar import day_of
from insole_common.messages import SessionMessage, parse_message
from processing.service import ProcessingService
from simulator import SimulationParams, simulate
from simulator.source import SimulatedInsoleSource
from storage.dashboard import patient_sessions
from storage.outbox import Outbox
from storage.store import PostgresStore, SQLiteStore
from tests.conftest import PG_DSN
from tests.helpers import running_service, wait_for
from transport.mqtt import MqttSettings, connect, make_client

pytestmark = pytest.mark.services
START_US = 1_797_200_000_000_000
LATE_N = 6  # the last raw batches (both feet) are delivered after the stop


@pytest.fixture(scope="module")
def walk_messages(tmp_path_factory) -> tuple[str, list[tuple[str, bytes]]]:
    """A patient and the collector's messages of one simulated 16-s walk, in the order it published them."""
    patient = f"t-{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("order")
    sim = simulate(SimulationParams(schedule=(("standing", 2.0), ("walking", 14.0))), seed=3)
    sources = [SimulatedInsoleSource(sim, side, device_id=f"{patient}-{side}", start_time_us=START_US, realtime=False,
                                     seed=5) for side in ("L", "R")]
    nowhere = MqttSettings.from_url("mqtt://127.0.0.1:9")  # nothing is sent: the outbox keeps every message
    collector = Collector(CollectorConfig(patient=patient, outbox_path=tmp / "outbox.sqlite", drain_timeout_s=0.1),
                          sources, nowhere, client_id=f"coll-{uuid.uuid4().hex[:6]}", clock_us=lambda: START_US)
    asyncio.run(collector.run(session_id=f"s-{patient}"))
    outbox = Outbox(tmp / "outbox.sqlite")
    messages = [(item.topic, item.payload) for item in outbox.peek(limit=100_000)]
    outbox.close()
    return patient, [(t, p) for t, p in messages if "/raw/" in t or t.endswith("/session")]


def stop_first(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The messages with the session's stop moved before the last ``LATE_N`` raw batches."""
    stop = messages[-1]
    assert stop[0].endswith("/session") and parse_message(stop[1]).event == "stop"
    body = messages[:-1]
    return [*body[:-LATE_N], stop, *body[-LATE_N:]]


def start_late(messages: list[tuple[str, bytes]], after_n: int = LATE_N) -> list[tuple[str, bytes]]:
    """The messages with the session's start moved after the first ``after_n`` raw batches."""
    start = messages[0]
    assert start[0].endswith("/session") and parse_message(start[1]).event == "start"
    return [*messages[1 : 1 + after_n], start, *messages[1 + after_n :]]


def reference(tmp_path, messages) -> ProcessingService:
    svc = ProcessingService(SQLiteStore(tmp_path / "ref.sqlite"))
    for topic, payload in messages:
        svc.handle(topic, payload)
    return svc


def through_broker(tmp_path, mqtt_settings, patient: str, ordered: list[tuple[str, bytes]],
                   frames_n: int) -> ProcessingService:
    """A service on its own SQLite store, fed ``ordered`` through the real broker (one connection, QoS 1: the broker
    keeps this order) until the collector's session is closed with results and ``frames_n`` frames are stored."""
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"))
    publisher = make_client(mqtt_settings, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    connect(publisher, mqtt_settings)
    publisher.loop_start()
    try:
        with running_service(svc, mqtt_settings):
            for topic, payload in ordered:
                publisher.publish(topic, payload, qos=1).wait_for_publish(10)
            assert wait_for(lambda: svc.stats.sessions_closed_n >= 1 and svc.store.session_has_results(f"s-{patient}")
                            and svc.stats.frames_accepted_n >= frames_n, 30), svc.stats
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    return svc


def results(svc: ProcessingService, patient: str) -> tuple[list[str], pd.DataFrame, int]:
    """The patient's sessions, the strides of the day and the frames of the collector's session."""
    sessions = [s["session_id"] for s in patient_sessions(svc.store, patient, limit=100, offset=0)]
    strides = svc.store.day_strides(patient, day_of(START_US, svc.store.patient_time_zone(patient)))
    frames_n = sum(b.n_frames for b in svc.store.session_batches(f"s-{patient}"))
    return sessions, strides, frames_n


def test_a_stop_published_before_the_last_batches_waits_for_them(tmp_path, mqtt_settings, walk_messages):
    patient, messages = walk_messages
    ref = reference(tmp_path, messages)
    ref_sessions, ref_strides, ref_frames_n = results(ref, patient)
    assert ref_sessions == [f"s-{patient}"] and len(ref_strides) > 10

    svc = through_broker(tmp_path, mqtt_settings, patient, stop_first(messages), ref.stats.frames_accepted_n)
    sessions, strides, frames_n = results(svc, patient)
    assert sessions == [f"s-{patient}"], "the late batches went to another session"
    assert frames_n == ref_frames_n
    assert svc.stats.sessions_closed_n == 1 and svc.stats.rejected_n == 0
    assert svc.stats.stops_early_n == 1 and svc.stats.sessions_reanalysed_n == 0  # waited, analysed once
    pd.testing.assert_frame_equal(strides, ref_strides)
    assert svc.store.session(f"s-{patient}").state == "closed"


def test_late_batches_after_the_grace_are_added_and_analysed_again(tmp_path, walk_messages):
    """The stop's grace runs out before the last batches come: the session is closed with what it has; when they
    come they are added to it (not to an implicit session) and it is analysed again, like an uninterrupted run."""
    patient, messages = walk_messages
    _sessions, ref_strides, ref_frames_n = results(reference(tmp_path, messages), patient)
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"))
    reordered = stop_first(messages)
    for topic, payload in reordered[:-LATE_N]:
        svc.handle(topic, payload)
    assert svc.store.session(f"s-{patient}").state == "open"  # waiting for the rest
    svc.close_idle_sessions(now_monotonic=float("inf"))  # the grace has run out
    assert svc.store.session(f"s-{patient}").state == "closed"
    early = results(svc, patient)[1]
    assert len(early) < len(ref_strides)
    svc.handle_group(reordered[-LATE_N:])
    assert svc.stats.sessions_reanalysed_n == 1  # once for the group, not per batch
    sessions, strides, frames_n = results(svc, patient)
    assert sessions == [f"s-{patient}"] and frames_n == ref_frames_n
    pd.testing.assert_frame_equal(strides, ref_strides)


def test_a_restart_between_the_stop_and_the_last_batches_still_waits(tmp_path, walk_messages):
    """The stop is committed (and acknowledged) while batches are missing, then the worker restarts: it takes up
    the stop from the store and closes the session once the batches arrive, with the stop's time and reason."""
    patient, messages = walk_messages
    ref_strides = results(reference(tmp_path, messages), patient)[1]
    reordered = stop_first(messages)
    first = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"))
    for topic, payload in reordered[:-LATE_N]:
        first.handle(topic, payload)
    first.store.close()
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"))
    for topic, payload in reordered[-LATE_N:]:
        svc.handle(topic, payload)
    assert svc.store.session(f"s-{patient}").state == "closed" and svc.stats.sessions_closed_n == 1
    stop = next(parse_message(p) for t, p in reordered if t == topics.session_topic(patient)
                and isinstance(parse_message(p), SessionMessage) and parse_message(p).event == "stop")
    closed = patient_sessions(svc.store, patient, limit=10, offset=0)
    assert [s["end_us"] for s in closed] == [stop.time_us]
    pd.testing.assert_frame_equal(results(svc, patient)[1], ref_strides)


def test_a_stop_without_ends_still_closes_at_once(tmp_path, walk_messages):
    """A collector from before ``ends``: its stop closes the session when it arrives, as before."""
    patient, messages = walk_messages
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"))
    for topic, payload in messages[:-1]:
        svc.handle(topic, payload)
    stop = parse_message(messages[-1][1])
    assert stop.ends  # the collector says how far each device's data goes
    svc.handle(messages[-1][0], stop.model_copy(update={"ends": None}).to_json())
    assert svc.store.session(f"s-{patient}").state == "closed" and svc.store.session_has_results(f"s-{patient}")


def test_a_start_published_after_the_first_batches_takes_them(tmp_path, mqtt_settings, walk_messages):
    """The first batches open an implicit session; the start, when it comes, makes that session the announced one:
    one session, the same frames and strides as in the collector's order (through the real Mosquitto)."""
    patient, messages = walk_messages
    ref = reference(tmp_path, messages)
    ref_sessions, ref_strides, ref_frames_n = results(ref, patient)
    svc = through_broker(tmp_path, mqtt_settings, patient, start_late(messages), ref.stats.frames_accepted_n)
    sessions, strides, frames_n = results(svc, patient)
    assert sessions == ref_sessions == [f"s-{patient}"], "the first batches stayed in an implicit session"
    assert frames_n == ref_frames_n and svc.stats.starts_late_n == 1 and svc.stats.rejected_n == 0
    pd.testing.assert_frame_equal(strides, ref_strides)


def test_a_start_adopts_on_postgres_too_but_never_an_earlier_walk(walk_messages):
    """The adoption is one transaction of the store (PostgreSQL here); data stamped before the start by more than
    the slack is a walk of its own and keeps its implicit session, which the start closes."""
    patient, messages = walk_messages
    start = parse_message(messages[0][1])
    later = SessionMessage(event="start", session_id=start.session_id, patient=patient,
                           time_us=start.time_us + 5_000_000, devices=dict(start.devices))
    for order, expected, adopted_n in ((start_late(messages), 1, 1), ([*messages[1:4], (messages[0][0], later.to_json())],
                                                                      2, 0)):
        schema = f"t_{uuid.uuid4().hex[:10]}"
        store = PostgresStore(PG_DSN, schema=schema)
        try:
            store.migrate()
            svc = ProcessingService(store)
            for topic, payload in order:
                svc.handle(topic, payload)
            held = [s["session_id"] for s in patient_sessions(store, patient, limit=10, offset=0)]
            assert len(held) == expected and f"s-{patient}" in held and svc.stats.starts_late_n == adopted_n, held
            assert sum(b.n_frames for b in store.session_batches(f"s-{patient}")) == (
                sum(b.n_frames for s in held for b in store.session_batches(s)) if adopted_n else 0)
        finally:
            store.close()
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
