"""The shipped broker configuration (deploy/mosquitto/mosquitto-secure.conf + acl) on a real Mosquitto:
patient A's collector cannot publish to or read patient B's topics, anonymous clients and wrong
passwords are refused, TLS connects and plain text to the TLS port fails."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from insole_common import topics
from tests.conftest import root_in_use
from transport.mqtt import MqttConnectError, MqttSettings, connect, make_client

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def start_secure_mosquitto(work: Path) -> tuple[subprocess.Popen, MqttSettings]:
    """Mosquitto with the shipped mosquitto-secure.conf, reading ``work``/passwd, acl and certs/
    (only the container's paths and the port replaced). Returns the process and TLS settings."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = (DEPLOY / "mosquitto" / "mosquitto-secure.conf").read_text()
    conf = conf.replace("/mosquitto/config/certs/", f"{work}/certs/").replace("/mosquitto/config/", f"{work}/")
    conf = conf.replace("/mosquitto/data/", f"{work}/").replace("listener 8883", f"listener {port} 127.0.0.1")
    if os.geteuid() == 0:  # as root mosquitto would switch to its own user, who cannot read a private tmp folder
        conf += "user root\n"
    (work / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError(f"secure mosquitto did not start: {proc.stdout.read()}")
    return proc, MqttSettings(host="127.0.0.1", port=port, tls=True, ca_file=str(work / "certs" / "ca.crt"))


def make_certs(work: Path) -> None:
    subprocess.run(["bash", str(DEPLOY / "make-broker-secrets.sh"), str(work / "certs"), "localhost"], check=True,
                   capture_output=True)


def shipped_broker(work: Path, users: tuple[str, ...]):
    """The shipped secure broker (rules under this test run's topic root, tests/conftest.py) with ``users``, each
    with a random password. Yields the TLS settings and the passwords."""
    make_certs(work)
    accounts = {user: secrets.token_urlsafe(16) for user in users}
    passwd = work / "passwd"
    passwd.touch()
    for user, password in accounts.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)
    (work / "acl").write_text((DEPLOY / "mosquitto" / "acl").read_text().replace(" kc/v1/", f" {root_in_use()}/"))
    proc, tls = start_secure_mosquitto(work)
    yield tls, accounts
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    yield from shipped_broker(tmp_path_factory.mktemp("secure-broker"),
                              ("patient-a", "patient-b", "kinetic-processing", "kinetic-dashboard"))


def client_as(tls: MqttSettings, user: str | None, password: str | None):
    settings = MqttSettings(host=tls.host, port=tls.port, tls=True, ca_file=tls.ca_file, username=user,
                            password=password)
    client = make_client(settings)
    connect(client, settings, timeout_s=5)
    return client


class Listener:
    def __init__(self, client, filters: list[str]) -> None:
        self.got: list[str] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = lambda _c, _u, m: self._add(m.topic)
        client.subscribe([(f, 1) for f in filters])
        assert subscribed.wait(5)
        self.client = client

    def _add(self, topic: str) -> None:
        with self.lock:
            self.got.append(topic)


def publish_and_settle(client, topic: str) -> bool:
    """Publish once; False when the broker cut the connection instead (Mosquitto 2 disconnects an
    MQTT 3.1.1 client that publishes outside its ACL; otherwise it drops the message)."""
    try:
        client.publish(topic, b"x", qos=1).wait_for_publish(5)
    except RuntimeError:
        return False
    time.sleep(0.3)
    return client.is_connected()


def test_a_collector_reaches_only_its_own_patient(secure_broker) -> None:
    tls, acc = secure_broker
    processing = Listener(client_as(tls, "kinetic-processing", acc["kinetic-processing"]),
                          [topics.partition_filters("raw/+")[0], topics.partition_filters("session")[0]])
    # (one connection per account at a time: the broker uses the username as client id)
    for forbidden in (topics.raw_topic("patient-b", "L"), topics.session_topic("patient-b"),
                      topics.strides_topic("patient-a")):  # another patient's data; a processing-only topic
        intruder = client_as(tls, "patient-a", acc["patient-a"])
        publish_and_settle(intruder, forbidden)  # dropped, or the connection cut: either way denied
        intruder.disconnect()
        intruder.loop_stop()
    spy = Listener(client_as(tls, "patient-a", acc["patient-a"]),
                   [topics.control_topic("patient-b"), topics.raw_topic("patient-b", "L"),
                    topics.control_topic("patient-a")])
    a = spy.client
    assert publish_and_settle(a, topics.raw_topic("patient-a", "L"))  # own data: allowed
    assert processing.got == [topics.raw_topic("patient-a", "L")]
    b = client_as(tls, "patient-b", acc["patient-b"])
    publish_and_settle(b, topics.raw_topic("patient-b", "L"))   # B's own data reaches processing ...
    dashboard = client_as(tls, "kinetic-dashboard", acc["kinetic-dashboard"])
    publish_and_settle(dashboard, topics.control_topic("patient-b"))  # ... and B's commands exist
    publish_and_settle(dashboard, topics.control_topic("patient-a"))
    assert topics.raw_topic("patient-b", "L") in processing.got
    with spy.lock:  # but A saw neither B's data nor B's commands, only its own command
        assert spy.got == [topics.control_topic("patient-a")]
    for c in (processing.client, a, b, dashboard):
        c.disconnect()
        c.loop_stop()


def test_anonymous_and_wrong_passwords_are_refused(secure_broker) -> None:
    tls, acc = secure_broker
    with pytest.raises(MqttConnectError, match="refused"):
        client_as(tls, None, None)
    with pytest.raises(MqttConnectError, match="refused"):
        client_as(tls, "patient-a", acc["patient-b"])


def test_plain_text_to_the_tls_port_fails(secure_broker) -> None:
    tls, acc = secure_broker
    plain = MqttSettings(host=tls.host, port=tls.port, username="patient-a", password=acc["patient-a"])
    with pytest.raises(MqttConnectError):
        client = make_client(plain)
        connect(client, plain, timeout_s=3)
    # and TLS with a CA that did not sign the server certificate fails too
    other = MqttSettings(host=tls.host, port=tls.port, tls=True, ca_file="/etc/ssl/certs/ca-certificates.crt",
                         username="patient-a", password=acc["patient-a"])
    with pytest.raises(MqttConnectError):
        client = make_client(other)
        connect(client, other, timeout_s=3)
