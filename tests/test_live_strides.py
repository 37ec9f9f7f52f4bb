"""The live (provisional) stride path and the ingest hot path of the processing service.

Correctness only (the latency is measured by benchmarks/bench_latency.py): through the real
Mosquitto, provisional strides are stored while the session runs, announced after the commit,
agree with the final analysis and are replaced by it at close; the group insert falls back to
one message at a time without losing or duplicating anything; acknowledgements go out after
the commit, so nothing stays queued for the worker.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import numpy as np
import pytest

import processing.service as service_mod
from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from insole_common.layouts import get_layout
from insole_common.messages import SessionMessage, parse_message
from processing.live import LiveProcess, _loads
from processing.service import ProcessingService, _live_spec
from simulator import SimulationParams, simulate
from simulator.device import ACC_SCALE_G, GYRO_SCALE_DPS, PRESSURE_SCALE_KPA, device_blocks
from storage.store import SQLiteStore, split_raw_rows
from tests.helpers import running_service, wait_for
from transport.mqtt import connect, make_client, purge_session

START_US = 1_797_000_000_000_000


@pytest.fixture(scope="module")
def walk():
    return simulate(SimulationParams(schedule=(("standing", 3.0), ("walking", 45.0)), imu=True), seed=8)


def walk_messages(sim, patient: str, *, start_us: int = START_US, seq0: int = 0) -> list[tuple[str, bytes]]:
    """The walk's 50-frame batches of both insoles, in the order a collector publishes them (a later session of
    the same insoles continues their numbering: ``seq0``)."""
    out = []
    for side in "LR":
        for b in device_blocks(sim, side, frames_per_block=50):
            batch = Batch(device_id=f"{patient}-{side}", side=side, sample_rate_hz=100.0, first_seq=seq0 + b.first_seq,
                          device_time_us=b.device_time_us, collector_time_us=start_us + b.first_seq * 10_000,
                          pressure_raw=b.pressure_counts, layout_id=get_layout("kc16").wire_id,
                          pressure_unit=PressureUnit.KPA, pressure_scale=PRESSURE_SCALE_KPA, imu_raw=b.imu_counts,
                          acc_scale_g=ACC_SCALE_G, gyro_scale_dps=GYRO_SCALE_DPS)
            out.append((b.first_seq, side, topics.raw_topic(patient, side), encode_batch(batch)))
    out.sort(key=lambda m: (m[0], m[1]))
    return [(t, p) for _s, _side, t, p in out]


def session_message(patient: str, event: str, session_id: str, time_us: int = START_US) -> tuple[str, bytes]:
    return topics.session_topic(patient), SessionMessage(event=event, session_id=session_id, patient=patient,
                                                         time_us=time_us).to_json()


def live_rows(store, session_id: str):
    return store.query("SELECT side, heel_strike_s, toe_off_s, next_heel_strike_s FROM live_strides "
                       "WHERE session_id = ? ORDER BY side, heel_strike_s", (session_id,))


def publish(mqtt_settings, messages) -> None:
    client = make_client(mqtt_settings)
    client.max_inflight_messages_set(100)
    connect(client, mqtt_settings)
    for info in [client.publish(t, p, qos=1) for t, p in messages]:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


@pytest.mark.services
def test_live_strides_are_stored_while_the_session_runs_and_replaced_at_close(tmp_path, mqtt_settings, patient_id,
                                                                               walk) -> None:
    store = SQLiteStore(tmp_path / "kc.sqlite")
    service = ProcessingService(store, live_process=True)  # as `kinetic process` runs: analysis in a helper process
    messages = walk_messages(walk, patient_id)
    lost = next(i for i, (t, _p) in enumerate(messages) if t.endswith("/L")) + 2 * 40  # one L batch at ~20 s lost
    sent = [m for i, m in enumerate(messages) if i != lost] + [messages[100]]  # ... and one delivered twice
    announced = []
    listener = make_client(mqtt_settings)
    listener.on_message = lambda _c, _u, m: announced.extend(parse_message(m.payload).strides)
    connect(listener, mqtt_settings)
    listener.subscribe(topics.strides_topic(patient_id), qos=1)
    time.sleep(0.3)
    sid = f"live-{patient_id}"
    with running_service(service, mqtt_settings, name="test-live"):
        publish(mqtt_settings, [session_message(patient_id, "start", sid), *sent])
        assert wait_for(lambda: service.stats.batches_n == len(sent), 60)
        assert service._live_proc is not None and not service._live_proc.failed
        # the helper process's strides come back and are stored and announced while the session runs
        assert wait_for(lambda: service.live_outstanding_n == 0
                        and service.stats.live_strides_n == len(live_rows(store, sid)) == len(announced) > 30, 10)
        assert store.query("SELECT state FROM sessions WHERE session_id = ?", (sid,))["state"][0] == "open"
        live = live_rows(store, sid)
        publish(mqtt_settings, [session_message(patient_id, "stop", sid, START_US + 50_000_000)])
        assert wait_for(lambda: service.stats.sessions_closed_n == 1, 60)
    listener.disconnect()
    listener.loop_stop()

    assert service.stats.rejected_n == 0 and service.stats.frames_duplicate_n == 50
    # announced after the commit: exactly what was stored, on the collector time base
    got = sorted((s.side, s.heel_strike_s) for s in announced)
    want = sorted(zip(live["side"], live["heel_strike_s"], strict=False))
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=0, atol=1e-6)
    # replaced at close by the final analysis, with which every provisional stride agrees within 20 ms
    assert live_rows(store, sid).empty
    final = store.query("SELECT side, heel_strike_s, metrics_json FROM strides WHERE session_id = ?", (sid,))
    final_t = {side: np.array([[json.loads(m)[c] for c in ("heel_strike_s", "toe_off_s", "next_heel_strike_s")]
                               for s, m in zip(final["side"], final["metrics_json"], strict=False) if s == side]) + START_US / 1e6
               for side in "LR"}
    for side in "LR":
        mine = live[live["side"] == side][["heel_strike_s", "toe_off_s", "next_heel_strike_s"]].to_numpy()
        ref = final_t[side]
        nearest = np.abs(ref[None, :, 0] - mine[:, None, 0]).argmin(axis=1)
        err = np.abs(mine - ref[nearest]).max(axis=1)
        print(f"{side}: {len(mine)} live, {len(ref)} final strides, worst event error {err.max() * 1000:.2f} ms")
        assert len(mine) >= 0.9 * len(ref) - 2 and err.max() <= 0.020
    # no provisional stride spans the lost batch
    gap_s = START_US / 1e6 + 20.0
    spans = live[(live["side"] == "L") & (live["heel_strike_s"] < gap_s + 0.5) & (live["next_heel_strike_s"] > gap_s)]
    assert spans.empty, spans


def test_a_restarted_service_does_not_store_a_live_stride_twice(tmp_path, walk) -> None:
    db = tmp_path / "kc.sqlite"
    messages = [session_message("p-restart", "start", "s-restart"), *walk_messages(walk, "p-restart")]
    half = len(messages) // 2
    first = ProcessingService(SQLiteStore(db), analyze_on_close=False)
    with first.store.transaction():
        first.handle_group(messages[:half])
    again = ProcessingService(SQLiteStore(db), analyze_on_close=False)  # a crash and restart mid-session
    for k in range(half, len(messages), 7):  # small groups, as at a low message rate
        with again.store.transaction():
            again.handle_group(messages[k : k + 7])
    live = live_rows(again.store, "s-restart")
    for side in "LR":
        hs = live[live["side"] == side]["heel_strike_s"].to_numpy()
        assert len(hs) > 30 and np.diff(hs).min() > 0.4  # one row per stride
    assert again.stats.frames_accepted_n + first.stats.frames_accepted_n == (len(messages) - 1) * 50


def test_a_failing_group_insert_falls_back_to_one_message_at_a_time(tmp_path, walk) -> None:
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), analyze_on_close=False)
    messages = walk_messages(walk, "p-fallback")
    with svc.store.transaction():
        svc.handle_group(messages[:10])  # every device known: the next batches take the hot path
    # another writer stores a batch behind the service's back: the group insert finds it (RawOverlapError)
    other = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), analyze_on_close=False, live_strides=False)
    other.handle(*messages[12])
    garbage = (messages[14][0], messages[14][1][:-1] + bytes([messages[14][1][-1] ^ 0xFF]))  # a bad checksum
    with svc.store.transaction():
        svc.handle_group([*messages[10:14], garbage, *messages[14:40]])
    rows = split_raw_rows(svc.store.query("SELECT device_id, first_seq, payload FROM raw_batches "
                                          "ORDER BY device_id, first_seq"))
    assert len(rows) == 40 and rows.groupby("device_id")["first_seq"].apply(lambda s: s.is_unique).all()
    assert sorted(rows["payload"]) == sorted(p for _t, p in messages[:40])  # each batch once, intact
    assert svc.stats.rejected == {"bad_checksum": 1}
    assert svc.stats.frames_accepted_n == 39 * 50 and svc.stats.frames_duplicate_n == 50
    assert svc.stats.batches_n == 40 and svc.stats.messages_n == 41


@pytest.mark.services
def test_messages_are_acknowledged_after_the_commit_and_not_redelivered(tmp_path, mqtt_settings, patient_id,
                                                                        walk) -> None:
    cid = f"test-ack-{uuid.uuid4().hex[:8]}"
    service = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), analyze_on_close=False)
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=service.run, args=(mqtt_settings,), daemon=True,
                         kwargs=dict(client_id=cid, stop=stop, ready=ready, persistent=True))
    t.start()
    try:
        assert ready.wait(10)
        messages = walk_messages(walk, patient_id)[:300]
        publish(mqtt_settings, messages)
        assert wait_for(lambda: service.stats.batches_n == len(messages), 30)
        time.sleep(0.5)  # the PUBACKs of the last group reach the broker
    finally:
        stop.set()
        t.join(10)
    # the persistent session holds nothing for this worker: every message was acknowledged (once)
    redelivered = []
    client = make_client(mqtt_settings, client_id=cid, clean_session=False)
    client.on_message = lambda _c, _u, m: redelivered.append(m.topic)
    connect(client, mqtt_settings)
    time.sleep(1.0)
    client.disconnect()
    client.loop_stop()
    purge_session(mqtt_settings, cid)
    assert [tp for tp in redelivered if patient_id in tp] == []


def test_the_helper_process_gives_the_in_process_strides_and_a_dead_helper_is_replaced(tmp_path, walk) -> None:
    """LiveProcess (the analysis in a helper process, as `kinetic process` runs it) stores the same strides as
    the in-process analysis; if the helper dies, the service logs it and analyses in-process from then on."""
    messages = [session_message("p-helper", "start", "s-helper"), *walk_messages(walk, "p-helper")]
    inproc = ProcessingService(SQLiteStore(tmp_path / "a.sqlite"), analyze_on_close=False)
    helper = ProcessingService(SQLiteStore(tmp_path / "b.sqlite"), analyze_on_close=False)
    helper._live_proc = LiveProcess()
    try:
        for svc in (inproc, helper):
            for k in range(0, len(messages), 64):
                with svc.store.transaction():
                    svc.handle_group(messages[k : k + 64])
            svc.collect_live(10.0)
        a, b = live_rows(inproc.store, "s-helper"), live_rows(helper.store, "s-helper")
        assert len(a) > 60 and helper.live_outstanding_n == 0
        assert a.equals(b)

        # a second session; the helper is killed half way through it
        more = [session_message("p-helper", "start", "s-helper2", START_US + 100000000),
                *walk_messages(walk, "p-helper", start_us=START_US + 100000000, seq0=10000)]
        half = len(more) // 2
        for k in range(0, half, 64):
            with helper.store.transaction():
                helper.handle_group(more[k : min(k + 64, half)])
        helper._live_proc._proc.kill()
        helper._live_proc._proc.wait(5)
        for k in range(half, len(more), 64):
            with helper.store.transaction():
                helper.handle_group(more[k : k + 64])
        assert helper._live_proc is None  # replaced by the in-process analysis
        late = live_rows(helper.store, "s-helper2")
        assert (late["heel_strike_s"] > START_US / 1e6 + 100 + 30).sum() > 20  # strides of the second half
        assert helper.stats.batches_n == inproc.stats.batches_n + len(more) - 1
    finally:
        if helper._live_proc is not None:
            helper._live_proc.close()


@pytest.mark.services
def test_the_burst_reader_delivers_every_message_intact_and_in_order(mqtt_settings, patient_id) -> None:
    """The worker's MQTT client reads through a receive buffer (transport.mqtt): messages smaller and much
    larger than its 64 KiB reads, back to back, arrive intact and in order, and a message that arrives
    after a quiet spell is not stuck in the buffer."""
    topic = f"kc-test/{patient_id}/burst"
    rng = np.random.default_rng(5)
    sizes = [int(x) for x in rng.integers(1, 5000, 400)] + [200_000, 3, 70_000, 65_536, 65_535]
    payloads = [rng.bytes(n) for n in sizes]
    got: list[bytes] = []
    reader = make_client(mqtt_settings, read_burst_n=8)
    reader.on_message = lambda _c, _u, m: got.append(m.payload)
    subscribed = threading.Event()
    reader.on_subscribe = lambda *a: subscribed.set()
    connect(reader, mqtt_settings)
    reader.subscribe(topic, qos=1)
    assert subscribed.wait(5)
    try:
        publish(mqtt_settings, [(topic, p) for p in payloads])
        assert wait_for(lambda: len(got) == len(payloads), 20)
        assert got == payloads
        time.sleep(0.5)
        publish(mqtt_settings, [(topic, b"after a pause")])
        assert wait_for(lambda: len(got) == len(payloads) + 1, 2)  # not held until the next packet or ping
        assert got[-1] == b"after a pause"
    finally:
        reader.disconnect()
        reader.loop_stop()


def test_the_burst_reader_still_serves_filtered_callbacks_and_survives_a_failing_one(mqtt_settings, patient_id) -> None:
    """The worker's client hands messages straight to on_message; a filtered callback (message_callback_add)
    still gets its topic's messages, and an exception in on_message is logged, not fatal to the client."""
    base = f"kc-test/{patient_id}/dispatch"
    plain: list[bytes] = []
    filtered: list[bytes] = []
    reader = make_client(mqtt_settings, read_burst_n=8)
    reader.suppress_exceptions = True

    def on_message(_c, _u, m):
        if m.payload == b"boom":
            raise RuntimeError("a failing callback")
        plain.append(m.payload)

    reader.on_message = on_message
    subscribed = threading.Event()
    reader.on_subscribe = lambda *a: subscribed.set()
    connect(reader, mqtt_settings)
    reader.subscribe(f"{base}/#", qos=1)
    assert subscribed.wait(5)
    try:
        publish(mqtt_settings, [(f"{base}/a", b"1"), (f"{base}/a", b"boom"), (f"{base}/a", b"2")])
        assert wait_for(lambda: len(plain) == 2, 10) and plain == [b"1", b"2"]  # the client read on
        reader.message_callback_add(f"{base}/f", lambda _c, _u, m: filtered.append(m.payload))
        publish(mqtt_settings, [(f"{base}/f", b"3"), (f"{base}/a", b"4")])
        assert wait_for(lambda: filtered == [b"3"] and plain == [b"1", b"2", b"4"], 10), (filtered, plain)
    finally:
        reader.disconnect()
        reader.loop_stop()


def test_live_strides_held_back_under_load_are_written_once_and_never_outlive_their_session(tmp_path, walk) -> None:
    """With ``live_write_every_s`` (run() under a backlog) strides wait in memory until the next due write;
    forced writes store each exactly once, announced after; a session closed meanwhile takes its
    unwritten strides with it (the final analysis replaces them)."""
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), analyze_on_close=False)
    announced: list = []
    svc.on_live_strides = lambda patient, sid, strides: announced.extend(strides)
    svc.live_write_every_s = 3600.0
    messages = [session_message("p-held", "start", "s-held"), *walk_messages(walk, "p-held")]
    half = len(messages) // 2
    with svc.store.transaction():
        svc.handle_group(messages[:half])
    svc._write_live_now()  # (the service writes at once in the first call: the clock starts at 0)
    written = len(live_rows(svc.store, "s-held"))
    assert written > 10 and len(announced) == written == svc.stats.live_strides_n
    for k in range(half, len(messages), 64):
        with svc.store.transaction():
            svc.handle_group(messages[k : k + 64])
        svc.flush_outgoing(all_live=False)
    held = len(svc._live_rows)
    assert held > 10 and len(live_rows(svc.store, "s-held")) == written  # not due yet: nothing written
    svc._write_live_now()
    live = live_rows(svc.store, "s-held")
    assert len(live) == written + held == len(announced) == svc.stats.live_strides_n
    for side in "LR":
        assert np.diff(live[live["side"] == side]["heel_strike_s"].to_numpy()).min() > 0.4  # once each
    # strides held back when the session closes are dropped with it
    messages2 = [session_message("p-held", "start", "s-held2"),
                 *walk_messages(walk, "p-held", start_us=START_US + 10 ** 8, seq0=10 ** 4)]
    with svc.store.transaction():
        svc.handle_group(messages2)
    assert any(r[0] == "s-held2" for r in svc._live_rows)
    with svc.store.transaction():
        svc.handle_group([session_message("p-held", "stop", "s-held2")])
    svc._write_live_now()
    assert len(live_rows(svc.store, "s-held2")) == 0 and not svc._live_rows


def test_an_idle_worker_collects_helper_replies_that_come_late(tmp_path, mqtt_settings, patient_id, walk,
                                                               monkeypatch) -> None:
    """Replies of the live-analysis helper that arrive after the worker stopped waiting for them (here it never
    waits) are still stored and announced once the worker is idle, not only when the next message comes."""

    monkeypatch.setattr(service_mod, "LIVE_WAIT_S", 0.0)
    store = SQLiteStore(tmp_path / "kc.sqlite")
    service = ProcessingService(store, live_process=True, analyze_on_close=False)
    sid = f"late-{patient_id}"
    with running_service(service, mqtt_settings, name="test-late"):
        publish(mqtt_settings, [session_message(patient_id, "start", sid), *walk_messages(walk, patient_id)])
        assert wait_for(lambda: service.live_outstanding_n == 0 and len(live_rows(store, sid)) > 30
                        and service.stats.live_strides_n == len(live_rows(store, sid)), 10), \
            (service.live_outstanding_n, service.stats.live_strides_n)


@pytest.mark.parametrize("unit, scale, offset", [(PressureUnit.KPA, PRESSURE_SCALE_KPA, 0.0), (PressureUnit.ADC, 1.0, 0.0),
                                                 (PressureUnit.KPA, 0.37, -1.25)])
def test_the_live_load_of_a_run_of_payloads_is_the_exact_channel_sum(unit, scale, offset) -> None:
    """processing.live turns a run of same-layout payloads into loads in one step (a float64 matrix product):
    the result must equal, bit for bit, the per-batch sum of the decoded counts (full 16-bit range included)."""
    rng = np.random.default_rng(5)
    batches = [Batch(device_id="p-L", side="L", sample_rate_hz=100.0, first_seq=50 * k, device_time_us=0,
                     collector_time_us=START_US, pressure_raw=rng.integers(0, 65536, (50, 16)).astype(np.uint16),
                     pressure_unit=unit, pressure_scale=scale, pressure_offset=offset) for k in range(13)]
    batches[0].pressure_raw[:] = 65535  # the largest sum a frame can have
    spec = _live_spec(batches[0], None)
    got = _loads(spec, [encode_batch(b) for b in batches])
    want = np.stack([b.pressure_raw.sum(axis=1, dtype=np.int64) * scale + 16 * offset for b in batches])
    assert got.shape == (13, 50)
    np.testing.assert_array_equal(got, want)
