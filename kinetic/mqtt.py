"""The one MQTT module: broker settings, paho clients, and paho errors as our exceptions.

Collector, processing service, dashboards and tests create their paho clients
here, so connection options (protocol, TLS, credentials, reconnect back-off)
are set in one place. Topics and payloads come from ``insole_common``.

Settings come from the environment (or arguments):

``KINETIC_MQTT_URL``       ``mqtt://host:port`` or ``mqtts://host:port`` (default ``mqtt://127.0.0.1:1883``)
``KINETIC_MQTT_USERNAME``  broker account (optional)
``KINETIC_MQTT_PASSWORD``  its password (optional; never put it in a file in the repo)
``KINETIC_MQTT_CA_FILE``   CA certificate for ``mqtts://`` (optional)
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as paho

from insole_common.errors import InsoleError

DEFAULT_URL = "mqtt://127.0.0.1:1883"


class MqttError(InsoleError):
    """Talking to the broker failed."""

    reason = "mqtt"


class MqttConnectError(MqttError):
    """The broker could not be reached or refused the connection."""

    reason = "mqtt_connect"


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    keepalive_s: int = 30

    @classmethod
    def from_url(cls, url: str, **extra) -> MqttSettings:
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
            raise MqttError(f"broker URL {url!r} must look like mqtt://host:port or mqtts://host:port")
        tls = parsed.scheme == "mqtts"
        return cls(host=parsed.hostname, port=parsed.port or (8883 if tls else 1883), tls=tls, **extra)

    @classmethod
    def from_env(cls, url: str | None = None) -> MqttSettings:
        env = os.environ
        return cls.from_url(
            url or env.get("KINETIC_MQTT_URL", DEFAULT_URL),
            username=env.get("KINETIC_MQTT_USERNAME") or None,
            password=env.get("KINETIC_MQTT_PASSWORD") or None,
            ca_file=env.get("KINETIC_MQTT_CA_FILE") or None,
        )

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def make_client(
    settings: MqttSettings,
    *,
    client_id: str | None = None,
    clean_session: bool = True,
    will: tuple[str, bytes, int, bool] | None = None,
) -> paho.Client:
    """A paho client (MQTT 3.1.1) configured from ``settings``; not yet connected."""
    client = paho.Client(
        callback_api_version=paho.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"kc-{uuid.uuid4().hex[:12]}",
        clean_session=clean_session,
        protocol=paho.MQTTv311,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_inflight_messages_set(50)
    client.max_queued_messages_set(0)
    return client


def connect(client: paho.Client, settings: MqttSettings, *, timeout_s: float = 10.0) -> None:
    """Connect and start paho's network thread; raise MqttConnectError if no CONNACK within ``timeout_s``.

    Paho keeps reconnecting by itself afterwards.
    """
    done = threading.Event()
    result: dict[str, object] = {}

    def on_connect(_c, _u, _flags, reason_code, _props):
        result["rc"] = reason_code
        done.set()

    previous = client.on_connect
    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except (OSError, ssl.SSLError) as exc:
        raise MqttConnectError(f"cannot reach the broker at {settings.url}: {exc}") from exc
    client.loop_start()
    if not done.wait(timeout_s):
        client.loop_stop()
        raise MqttConnectError(f"no answer from the broker at {settings.url} within {timeout_s:.0f} s")
    client.on_connect = previous
    rc = result["rc"]
    if getattr(rc, "is_failure", False):
        client.loop_stop()
        raise MqttConnectError(f"the broker at {settings.url} refused the connection: {rc}")
    if previous is not None:
        previous(client, client.user_data_get(), None, rc, None)


def broker_reachable(settings: MqttSettings, *, timeout_s: float = 2.0) -> bool:
    """True when a TCP connection to the broker's port succeeds."""
    try:
        with socket.create_connection((settings.host, settings.port), timeout=timeout_s):
            return True
    except OSError:
        return False


def purge_session(settings: MqttSettings, client_id: str, *, timeout_s: float = 5.0) -> None:
    """Discard the broker's persistent session of ``client_id`` (connect once with a clean session)."""
    client = make_client(settings, client_id=client_id, clean_session=True)
    connect(client, settings, timeout_s=timeout_s)
    client.disconnect()
    client.loop_stop()
