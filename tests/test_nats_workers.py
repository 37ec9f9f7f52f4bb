"""Two partitioned processing workers drain a backlog from a three-node NATS cluster without waiting for redelivery.

NATS's MQTT listener makes each QoS 1 subscription a JetStream consumer that may have ``max_ack_pending``
messages unacknowledged, but it also lets a whole MQTT session hold only ``max_ack_pending`` unacknowledged
messages (nats-server ``server/mqtt.go``, ``trackPending``): a delivery beyond that is dropped without a word and
waits for the consumer's ``ack_wait`` to be sent again. A worker that subscribes to its partitions with one
filter each (8 raw filters of 16 partitions for two workers) lets JetStream push 8 windows into a session that
takes one: it received a window, acknowledged it, and then waited ``ack_wait`` for the rest (docs/scale.md,
"Workers on the cluster"). On NATS the worker therefore holds one session per subscription.

Here the window is small (``max_ack_pending`` 64) and ``ack_wait`` long (60 s), so a backlog of 10 windows per
worker drains in seconds when nothing is dropped and cannot drain within the 30 s bound otherwise; every
batch must be stored once, in the one worker owning its partition, and JetStream must report no redelivery.
"""

from __future__ import annotations

import threading
import time
import types
import uuid

import numpy as np
import pytest

from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from processing.service import ProcessingService
from storage.store import SQLiteStore
from tests.fixtures.broker import publish_all
from tests.fixtures.nats import NatsCluster
from tests.helpers import wait_for
from transport.mqtt import MqttError, MqttSettings

pytestmark = pytest.mark.services  # (nats-server missing: the cluster fails to start, as in test_nats_cluster; never a skip)
START_US = 1_797_200_000_000_000
FRAMES = 10
BATCHES_PER_DEVICE = 40


def one_patient_per_partition() -> list[str]:
    patients: dict[int, str] = {}
    while len(patients) < topics.N_PARTITIONS:
        p = f"t-{uuid.uuid4().hex[:10]}"
        patients.setdefault(topics.partition_of(p), p)
    return [patients[k] for k in sorted(patients)]


def backlog(patients: list[str]) -> list[tuple[str, bytes]]:
    """Raw messages of both insoles of every patient, interleaved as they arrive live."""
    rng = np.random.default_rng(3)
    out = []
    for k in range(BATCHES_PER_DEVICE):
        for patient in patients:
            for side in ("L", "R"):
                first = k * FRAMES
                out.append((topics.raw_topic(patient, side), encode_batch(Batch(
                    device_id=f"{patient}-{side}", side=side, sample_rate_hz=100.0, first_seq=first,
                    device_time_us=first * 10_000, collector_time_us=START_US + first * 10_000,
                    pressure_raw=rng.integers(0, 3000, (FRAMES, 16)).astype(np.uint16), layout_id=1,
                    pressure_unit=PressureUnit.KPA, pressure_scale=0.1))))
    return out


class Workers:
    """``n`` partitioned workers (threads), each with a persistent session on its own node and its own database."""

    def __init__(self, cluster: NatsCluster, tmp_path, n: int) -> None:
        self.cluster, self.tmp_path, self.n = cluster, tmp_path, n
        self.services: list[ProcessingService] = []
        self.threads: list[threading.Thread] = []
        self.stop = threading.Event()

    def start(self) -> None:
        self.services, self.threads, self.stop = [], [], threading.Event()
        for i in range(self.n):
            svc = ProcessingService(SQLiteStore(self.tmp_path / f"w{i}.sqlite"), partitions=topics.partitions_for_worker(
                i, self.n), analyze_on_close=False, live_strides=False, inactivity_s=3600)
            ready = threading.Event()
            order = [(i + k) % self.cluster.n for k in range(self.cluster.n)]  # worker i on node i
            t = threading.Thread(target=svc.run, args=(self.cluster.settings(*order),), daemon=True,
                                 kwargs=dict(client_id=f"w{i}-of-{self.n}", stop=self.stop, ready=ready, persistent=True))
            t.start()
            assert ready.wait(30), f"worker {i} did not subscribe"
            self.services.append(svc)
            self.threads.append(t)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(20)
            assert not t.is_alive()

    def stored_n(self) -> int:
        return sum(svc.stats.batches_n for svc in self.services)


def test_two_workers_drain_a_backlog_without_waiting_for_redelivery(tmp_path):
    cluster = NatsCluster(tmp_path / "nats", n=3, ack_wait_s=60.0, max_ack_pending_n=64).start()
    try:
        workers = Workers(cluster, tmp_path, 2)
        workers.start()  # the sessions and their consumers exist from here on
        workers.join()
        patients = one_patient_per_partition()
        messages = backlog(patients)
        publish_all(cluster.settings(2, 0, 1), messages, inflight_n=100, timeout_s=60)
        t0 = time.monotonic()
        workers.start()
        try:
            drained = wait_for(lambda: workers.stored_n() >= len(messages), 30.0)
            stored = [svc.stats.batches_n for svc in workers.services]
            print(f"\n{sum(stored)} of {len(messages)} batches drained by two workers in {time.monotonic() - t0:.1f} s "
                  f"(sessions set up included)")
        finally:
            workers.join()
        consumers = cluster.consumers()
        redelivered = sum(c.get("num_redelivered", 0) for c in consumers)
        assert drained, (f"{sum(stored)} of {len(messages)} batches stored within 30 s (per worker {stored}); JetStream "
                         f"redelivered {redelivered}, holds {sum(c.get('num_ack_pending', 0) for c in consumers)} "
                         f"unacknowledged in {len(consumers)} consumers")
        assert redelivered == 0
        frames_n = len(messages) * FRAMES
        for i, svc in enumerate(workers.services):  # each device in the one worker owning its partition, stored once
            owned = set(topics.partitions_for_worker(i, 2))
            devices = svc.store.query("SELECT DISTINCT device_id FROM raw_batches")["device_id"]
            assert {topics.partition_of(d.rsplit("-", 1)[0]) for d in devices} <= owned
            assert len(devices) == 2 * len(owned)
        assert sum(svc.stats.frames_accepted_n for svc in workers.services) == frames_n
        assert sum(svc.stats.frames_duplicate_n for svc in workers.services) == 0
    finally:
        cluster.stop()


def test_one_session_per_subscription_only_when_asked():
    """On Mosquitto one session (one client id) holds every filter; on NATS each filter gets a session of its own, named
    after its kind and partition so that a restarted worker finds its sessions (and what they hold) again."""
    mine = types.SimpleNamespace(partitions=[1, 3])
    one = ProcessingService._sessions(mine, "kp-1-of-2", session_per_subscription=False)
    assert one == [("kp-1-of-2", topics.partition_filters("raw/+", [1, 3]) + topics.partition_filters("session", [1, 3]))]
    per = ProcessingService._sessions(mine, "kp-1-of-2", session_per_subscription=True)
    assert per == [("kp-1-of-2-raw-01", [topics.partition_filters("raw/+", [1])[0]]),
                   ("kp-1-of-2-raw-03", [topics.partition_filters("raw/+", [3])[0]]),
                   ("kp-1-of-2-session-01", [topics.partition_filters("session", [1])[0]]),
                   ("kp-1-of-2-session-03", [topics.partition_filters("session", [3])[0]])]
    alone = ProcessingService._sessions(types.SimpleNamespace(partitions=None), "kp", session_per_subscription=True)
    assert alone == [("kp-raw-all", topics.partition_filters("raw/+")), ("kp-session-all", topics.partition_filters("session"))]


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("1", True), ("true", True)])
def test_session_per_subscription_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("KINETIC_MQTT_SESSION_PER_SUBSCRIPTION", value)
    assert MqttSettings.from_env("mqtt://127.0.0.1:1883").session_per_subscription is expected
    monkeypatch.setenv("KINETIC_MQTT_SESSION_PER_SUBSCRIPTION", "maybe")
    with pytest.raises(MqttError):
        MqttSettings.from_env("mqtt://127.0.0.1:1883")
