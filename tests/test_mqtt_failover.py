"""Reconnect back-off and failover between several brokers, through real Mosquittos on free ports.

Each test starts its own Mosquittos (``tests.fixtures.broker``), never touching the shared broker:
- a client given two addresses moves to the second when its broker dies and data flows on within 2 s;
- a client whose only broker is down for a few seconds delivers again within 2 s of the broker's return
  (paho's own back-off, 1 s doubling, waits up to 4 s more here).
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.fixtures.broker import PrivateMosquitto
from transport.mqtt import MqttError, MqttSettings, connect, make_client

pytestmark = pytest.mark.services
TOPIC = "kc-test/failover/seq"


class Stream:
    """A QoS 1 publisher of numbered messages every ``period_s`` through ``settings`` (its own thread)."""

    def __init__(self, settings: MqttSettings, period_s: float = 0.02) -> None:
        self.client = make_client(settings, client_id=f"pub-{id(self):x}")
        connect(self.client, settings)
        self.period_s, self.sent_n, self.stop = period_s, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.period_s):
            self.client.publish(TOPIC, str(self.sent_n).encode(), qos=1)
            self.sent_n += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.client.disconnect()
        self.client.loop_stop()


class Arrivals:
    """A persistent-session subscriber on one broker: the arrival time of each message number."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.at: dict[int, float] = {}
        self.client = make_client(settings, client_id=client_id, clean_session=False)

        def on_connect(c, _u, _f, rc, _p):
            if not rc.is_failure:
                c.subscribe(TOPIC, 1)

        def on_message(_c, _u, msg):
            self.at.setdefault(int(msg.payload), time.monotonic())

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        connect(self.client, settings)

    def gap_after(self, t: float, timeout_s: float, what: str) -> float:
        """Seconds from ``t`` to the first message that arrives after it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            later = [a for a in list(self.at.values()) if a > t]
            if later:
                gap_s = min(later) - t
                print(f"{what}: {gap_s:.3f} s")
                return gap_s
            time.sleep(0.01)
        raise AssertionError(f"{what}: nothing within {timeout_s} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_several_broker_addresses_parse():
    s = MqttSettings.from_url("mqtt://h1:1883, mqtt://h2:1884,mqtt://h3")
    assert s.addresses == (("h1", 1883), ("h2", 1884), ("h3", 1883))
    assert (s.host, s.port, s.tls) == ("h1", 1883, False)
    assert MqttSettings.from_url(s.url) == s
    assert MqttSettings.from_url("mqtts://a,mqtts://b:9").addresses == (("a", 8883), ("b", 9))
    with pytest.raises(MqttError, match="mix"):
        MqttSettings.from_url("mqtt://a,mqtts://b")
    with pytest.raises(MqttError, match="must look like"):
        MqttSettings.from_url("mqtt://a,")


def close_all(*parts) -> None:
    """Close clients and stop brokers, every one of them even when one fails (its error is raised after)."""
    errors = []
    for part in parts:
        try:
            part.close() if hasattr(part, "close") else part.stop()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the others are stopped
            errors.append(exc)
    if errors:
        raise errors[0]


def test_client_fails_over_to_the_next_broker(tmp_path):
    a, b = PrivateMosquitto(tmp_path / "a"), PrivateMosquitto(tmp_path / "b")
    a.start()
    b.start()
    both = MqttSettings.from_url(f"mqtt://127.0.0.1:{a.port},mqtt://127.0.0.1:{b.port}", keepalive_s=5)
    on_b = Arrivals(b.settings, "arrivals-b")
    stream = Stream(both)
    try:
        time.sleep(0.5)
        assert not on_b.at, "the stream starts on the first broker"
        killed_at = time.monotonic()
        a.proc.kill()  # SIGKILL: no goodbye
        assert on_b.gap_after(killed_at, 5, "failover: data through the second broker after the first was killed") < 2.0
    finally:
        close_all(stream, on_b, a, b)


def test_client_resumes_within_2_s_of_the_brokers_return(tmp_path):
    broker = PrivateMosquitto(tmp_path / "m")
    broker.start()
    arrivals = Arrivals(broker.settings, "arrivals-restart")
    stream = Stream(broker.settings)
    try:
        time.sleep(0.3)
        broker.stop()
        time.sleep(3.2)  # paho's own back-off would next try at 7 s after the loss (1, 2, 4 s)
        broker.start()
        assert arrivals.gap_after(time.monotonic(), 8, "back-off: data again after the broker listens again") < 2.0
    finally:
        close_all(stream, arrivals, broker)
