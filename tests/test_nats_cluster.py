"""The pipeline on a three-node NATS cluster (its MQTT listener), losing nodes mid-stream with nothing lost.

Three private ``nats-server`` processes (``tests.fixtures.nats``: loopback ports, own store folders,
JetStream with the MQTT streams and session consumers replicated on all three). A collector streams a
simulated walk at its real rate into node 0; a processing worker with a persistent session and manual
acknowledgements consumes from node 1. Mid-stream node 0 is killed (SIGKILL), brought back, then node 1
(the worker's) is killed. Every frame must be stored exactly once and the session and its strides must be
those of an uninterrupted run of the same walk; the time until data flows again after each kill is
printed. (Two nodes down at once would leave JetStream without a quorum, so node 0 returns first.)

The pause is set by JetStream, not by the clients (they retry within 0.25-1 s): when the dead node led
the Raft group of an MQTT stream or of the session's consumer, the survivors wait 4-9 s (nats-server's
fixed election timeout) before electing a new leader, and a CONNECT meanwhile hangs until the server's
4 s JetStream request times out. Measured here: 1-12 s (15 s once, load ~10 on 2 cores); the bound of 25 s
allows two election rounds on a loaded machine: the figure is reported, the bound only says that data flows again.

NATS orders messages per subscription only, so the session's stop can overtake the last raw batches; the
stop says how far each device's data goes and the worker waits for it (docs/architecture.md, "Sessions"),
so the session, its frames and its strides must equal the uninterrupted run's every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid

import pandas as pd
import pytest

from collector.service import Collector, CollectorConfig
from insole_common.calendar import day_of
from insole_common.codec import decode_batch
from processing.service import ProcessingService
from simulator import SimulationParams, simulate
from simulator.device import device_blocks
from simulator.source import SimulatedInsoleSource
from storage.outbox import Outbox
from storage.store import SQLiteStore
from tests.fixtures.nats import NatsCluster
from tests.helpers import running_service, wait_for

pytestmark = pytest.mark.services
START_US = 1_797_100_000_000_000
WALK_S = 26.0


class Arrivals:
    """Wraps a service's ``handle_group``: the monotonic time of every raw message it is given."""

    def __init__(self, svc: ProcessingService) -> None:
        self.times: list[float] = []
        self.batches: set[tuple[str, int]] = set()  # (device, first seq) of every raw batch handed to the worker
        inner = svc.handle_group

        def handle_group(messages):
            now = time.monotonic()
            for topic, payload in messages:
                if "/raw/" in topic:
                    self.times.append(now)
                    with contextlib.suppress(Exception):  # a bad payload is the service's to reject
                        batch = decode_batch(payload)
                        self.batches.add((batch.device_id, batch.first_seq))
            return inner(messages)

        svc.handle_group = handle_group  # type: ignore[method-assign]

    def resumed_after(self, t: float, timeout_s: float = 30.0) -> float:
        """Seconds from ``t`` until raw data reached the worker again after its longest pause following ``t``
        (the outage: data already on its way when the node died may still arrive just after ``t``)."""
        assert wait_for(lambda: any(x > t + 3.0 for x in self.times), timeout_s), "no data after the kill"
        after = [t] + [x for x in list(self.times) if x > t]
        gaps = [(b - a, b) for a, b in itertools.pairwise(after) if a < t + 2.0]
        return max(gaps)[1] - t


def collect(sim, patient: str, settings, outbox, *, realtime: bool) -> Collector:
    sources = [SimulatedInsoleSource(sim, side, device_id=f"{patient}-{side}", start_time_us=START_US,
                                     realtime=realtime, seed=5) for side in ("L", "R")]
    collector = Collector(CollectorConfig(patient=patient, outbox_path=outbox, drain_timeout_s=60.0), sources, settings,
                          client_id=f"coll-{uuid.uuid4().hex[:6]}", clock_us=lambda: START_US)
    asyncio.run(collector.run(session_id=f"s-{patient}"))
    return collector


def stored(store: SQLiteStore, patient: str) -> dict:
    """The patient's frames per device (of the collector's session and of any implicit session opened for late data),
    the collector's session row, the sessions holding data, and the strides of the day."""
    sid = f"s-{patient}"
    frames: dict[str, list[int]] = {}
    holding = set()
    sessions = store.query("SELECT session_id FROM sessions WHERE patient = ? ORDER BY session_id", (patient,))
    for session in sessions["session_id"]:
        for b in store.session_batches(session):
            frames.setdefault(b.device_id, []).extend(range(b.first_seq, b.first_seq + b.n_frames))
            holding.add(session)
    strides = store.day_strides(patient, day_of(START_US, store.patient_time_zone(patient)))
    return {"frames": {d: sorted(s) for d, s in frames.items()}, "session": store.session(sid),
            "holding": sorted(holding), "strides": strides}


def test_cluster_survives_losing_the_collectors_then_the_workers_node(tmp_path):
    patient = f"t-{uuid.uuid4().hex[:10]}"
    sim = simulate(SimulationParams(schedule=(("standing", 2.0), ("walking", WALK_S)), imu=True), seed=11)
    cluster = NatsCluster(tmp_path / "nats", n=3, ack_wait_s=2.0).start()
    try:
        # the reference: the same walk, uninterrupted, into its own database (node 2)
        ref_svc = ProcessingService(SQLiteStore(tmp_path / "ref.sqlite"), analyze_on_close=True)
        with running_service(ref_svc, cluster.settings(2), name="ref"):
            collect(sim, patient, cluster.settings(2), tmp_path / "ref-outbox.sqlite", realtime=False)
            frames_n = sum(len(b.pressure_counts) for side in "LR" for b in device_blocks(sim, side, frames_per_block=5))
            assert wait_for(lambda: ref_svc.stats.frames_accepted_n >= frames_n and ref_svc.stats.sessions_closed_n >= 1,
                            30), ref_svc.stats
        reference = stored(ref_svc.store, patient)
        assert reference["strides"].shape[0] > 10

        svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), analyze_on_close=True)
        arrivals = Arrivals(svc)
        stop, ready = threading.Event(), threading.Event()
        worker = threading.Thread(target=svc.run, args=(cluster.settings(1, 0, 2),), daemon=True,
                                  kwargs=dict(client_id="kc-proc-cluster", stop=stop, ready=ready, persistent=True))
        worker.start()
        assert ready.wait(30)
        collector = threading.Thread(target=collect, args=(sim, patient, cluster.settings(0, 2, 1),
                                                           tmp_path / "outbox.sqlite"), kwargs=dict(realtime=True))
        collector.start()
        try:
            time.sleep(4.0)
            kill_collector_node = time.monotonic()
            cluster.kill(0)  # the collector's node, mid-stream
            collector_gap_s = arrivals.resumed_after(kill_collector_node)
            cluster.start_node(0)
            cluster.wait_ready(0)
            cluster.wait_caught_up()  # else the survivors of the next kill may lack a quorum
            kill_worker_node = time.monotonic()
            cluster.kill(1)  # the node the processing session is connected to
            worker_gap_s = arrivals.resumed_after(kill_worker_node)
            print(f"\ndata flows again {collector_gap_s:.2f} s after the collector's node was killed, "
                  f"{worker_gap_s:.2f} s after the worker's node was killed "
                  f"({svc.stats.frames_duplicate_n} redelivered frames dropped as duplicates)")
            print(f"session stops before the session's last batches: {svc.stats.stops_early_n}, "
                  f"sessions analysed again for late batches: {svc.stats.sessions_reanalysed_n}")
            collector.join(60)
            assert not collector.is_alive()
            assert wait_for(lambda: svc.stats.frames_accepted_n >= frames_n and svc.stats.sessions_closed_n >= 1, 30)
        finally:
            stop.set()
            worker.join(10)
        result = stored(svc.store, patient)
        for device, frames in reference["frames"].items():  # nothing lost, nothing twice, gaps kept
            got = result["frames"].get(device, [])
            lost, twice = sorted(set(frames) - set(got)), len(got) - len(set(got))
            handed = sorted(seq for d, seq in arrivals.batches if d == device and lost and lost[0] <= seq <= lost[-1])
            outbox_n = len(Outbox(tmp_path / "outbox.sqlite"))
            where = (f"batches handed to the worker in the lost range: {handed}; the collector's outbox holds {outbox_n} "
                     f"messages; JetStream holds {cluster.stream_messages_n('$MQTT_msgs')} unacknowledged MQTT messages")
            assert got == frames, f"{device}: {len(lost)} frames lost (first {lost[:3]}), {twice} stored twice; {where}"
        assert result["frames"].keys() == reference["frames"].keys()
        assert svc.stats.rejected_n == 0
        assert collector_gap_s < 25.0 and worker_gap_s < 25.0
        # one session holding every frame, analysed at its close as the uninterrupted run's
        assert result["holding"] == reference["holding"] == [f"s-{patient}"]
        assert svc.stats.sessions_closed_n == ref_svc.stats.sessions_closed_n == 1
        pd.testing.assert_frame_equal(result["strides"], reference["strides"], check_exact=False, rtol=1e-3, atol=1e-3)
        assert result["session"] == reference["session"]
    finally:
        cluster.stop()
