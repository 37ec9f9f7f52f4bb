"""Client ids bound to accounts in the shipped secure broker configuration (issue 21, item 3): with patient A's
credentials nobody can take over patient B's gateway connection or the processing service's persistent session,
whatever client id they send; and the project's own clients use their account's name as client id."""

from __future__ import annotations

import threading
import time

import pytest

from collector.service import Collector, CollectorConfig
from insole_common import topics
from tests.test_broker_security import shipped_broker
from transport.mqtt import MqttSettings, connect, make_client


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    yield from shipped_broker(tmp_path_factory.mktemp("identity-broker"), ("patient-a", "patient-b", "kinetic-processing"))


def as_account(broker, user: str) -> MqttSettings:
    tls, accounts = broker
    return MqttSettings(host=tls.host, port=tls.port, tls=True, ca_file=tls.ca_file, username=user,
                        password=accounts[user])


def connected(settings: MqttSettings, client_id: str, *, clean_session: bool = True):
    client = make_client(settings, client_id=client_id, clean_session=clean_session)
    client.disconnects = []
    client.on_disconnect = lambda _c, _u, _f, rc, _p: client.disconnects.append(rc)
    connect(client, settings, timeout_s=5)
    return client


def close(*clients) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


def test_another_account_cannot_kick_a_gateway_offline(broker) -> None:
    """Patient A connecting with B's gateway's client id leaves B connected."""
    b = connected(as_account(broker, "patient-b"), "collector-patient-b")
    a = connected(as_account(broker, "patient-a"), "collector-patient-b")
    time.sleep(1.0)
    assert b.disconnects == [] and a.disconnects == []
    close(a, b)


def test_another_account_cannot_discard_the_processing_services_queue(broker) -> None:
    """Messages queued for the processing worker's persistent session survive a clean-session connect under its
    client id from a patient's account: all 20 arrive when the worker comes back."""
    worker_id = "kinetic-processing-0-of-1"
    processing = as_account(broker, "kinetic-processing")
    worker = connected(processing, worker_id, clean_session=False)
    subscribed = threading.Event()
    worker.on_subscribe = lambda *_a: subscribed.set()
    worker.subscribe(topics.partition_filters("raw/+")[0], qos=1)
    assert subscribed.wait(5)
    close(worker)
    b = connected(as_account(broker, "patient-b"), "collector-patient-b")
    for k in range(20):
        b.publish(topics.raw_topic("patient-b", "L"), f"{k}".encode(), qos=1).wait_for_publish(5)
    close(b)
    intruder = connected(as_account(broker, "patient-a"), worker_id, clean_session=True)
    time.sleep(0.5)
    close(intruder)
    got: list[bytes] = []
    back = make_client(processing, client_id=worker_id, clean_session=False)
    back.on_message = lambda _c, _u, m: got.append(m.payload)
    connect(back, processing, timeout_s=5)
    deadline = time.monotonic() + 5
    while len(got) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    close(back)
    assert got == [f"{k}".encode() for k in range(20)]


def test_the_collector_uses_its_account_as_client_id(tmp_path) -> None:
    settings = MqttSettings(host="127.0.0.1", port=1, username="p-0a1b2c3d4e5f", password="x")  # never connects
    collector = Collector(CollectorConfig(patient="p-0a1b2c3d4e5f", outbox_path=tmp_path / "o.sqlite"), [], settings)
    assert collector.client_id == "p-0a1b2c3d4e5f"
    collector.outbox.close()
