"""The one MQTT module: broker settings, paho clients, and paho errors as our exceptions.

Collector, processing service, dashboards and tests create their paho clients
here, so connection options (protocol, TLS, credentials, reconnect back-off)
are set in one place. Topics and payloads come from ``insole_common``.

Settings come from the environment (or arguments):

``KINETIC_MQTT_URL``       ``mqtt://host:port`` or ``mqtts://host:port`` (default ``mqtt://127.0.0.1:1883``);
                           several brokers (the nodes of a cluster) comma-separated,
                           ``mqtt://h1:1883,mqtt://h2:1883``: a client connects to the first that answers
                           and fails over to the next when its broker goes away
``KINETIC_MQTT_USERNAME``  broker account (optional)
``KINETIC_MQTT_PASSWORD``  its password (optional; never put it in a file in the repo)
``KINETIC_MQTT_CA_FILE``   CA certificate for ``mqtts://`` (optional)
``KINETIC_MQTT_SESSION_PER_SUBSCRIPTION``
                           ``1`` on NATS (its MQTT listener): a consumer of several QoS 1 topic filters holds one
                           broker session per filter (:attr:`MqttSettings.session_per_subscription`); unset or ``0``
                           on Mosquitto (one session per client, as its secure listener requires)

Reconnecting: after a lost connection or a failed attempt a client waits a capped exponential back-off with
full jitter (``uniform(0, min(RECONNECT_CAP_S, RECONNECT_FIRST_S * 2**n))``), so a broker that comes back is
used again within about ``RECONNECT_CAP_S`` and many clients do not reconnect in lockstep; every new attempt
goes to the next address of the list.
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from insole_common.errors import InsoleError

DEFAULT_URL = "mqtt://127.0.0.1:1883"
#: upper bound of the first reconnect wait (full jitter: the wait is uniform in [0, bound])
RECONNECT_FIRST_S = 0.25
#: the bound doubles per failed attempt up to this cap (reset by a successful connection)
RECONNECT_CAP_S = 1.0
#: a QoS 1 publication unacknowledged this long on a live connection drops the connection, so that paho sends
#: it again (DUP) after reconnecting: MQTT 3.1.1 retransmits only then (a safety net for a broker that could
#: not store a PUBLISH, as NATS logs during a JetStream leader election, and leaves it unanswered)
PUBACK_TIMEOUT_S = 10.0


class MqttError(InsoleError):
    """Talking to the broker failed."""

    reason = "mqtt"


class MqttConnectError(MqttError):
    """The broker could not be reached or refused the connection."""

    reason = "mqtt_connect"


@dataclass(frozen=True)
class MqttSettings:
    """Where the broker is and how to log in. ``host``/``port`` is the first broker; ``fallbacks`` the other
    nodes of a cluster, tried in turn when the current one goes away (all with the same TLS and account)."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    keepalive_s: int = 30
    fallbacks: tuple[tuple[str, int], ...] = ()
    #: a consumer of several QoS 1 topic filters subscribes to each in a session (client id) of its own. Needed on
    #: NATS: its MQTT listener lets each QoS 1 subscription (a JetStream consumer) have ``max_ack_pending`` messages
    #: unacknowledged but the whole session only as many, and silently drops a delivery beyond that until the
    #: consumer's ``ack_wait`` sends it again (nats-server ``server/mqtt.go``, ``trackPending``): with k filters
    #: carrying a backlog, all but one window waits ``ack_wait`` (docs/scale.md, "Workers on the cluster").
    #: Off for Mosquitto, whose secure listener makes the account name the client id (one connection per account).
    session_per_subscription: bool = False

    @classmethod
    def from_url(cls, url: str, **extra) -> MqttSettings:
        """``mqtt://host:port`` or several, comma-separated (one scheme for all)."""
        addresses: list[tuple[str, int]] = []
        schemes = set()
        for part in (p.strip() for p in url.split(",")):
            parsed = urlparse(part)
            if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
                raise MqttError(f"broker URL {part!r} must look like mqtt://host:port or mqtts://host:port")
            try:
                port = parsed.port
            except ValueError as exc:
                raise MqttError(f"broker URL {part!r} has an invalid port") from exc
            schemes.add(parsed.scheme)
            addresses.append((parsed.hostname, port or (8883 if parsed.scheme == "mqtts" else 1883)))
        if len(schemes) > 1:
            raise MqttError(f"broker URLs {url!r} mix mqtt:// and mqtts://; use one for all")
        (host, port), *fallbacks = addresses
        return cls(host=host, port=port, tls=schemes == {"mqtts"}, fallbacks=tuple(fallbacks), **extra)

    @classmethod
    def from_env(cls, url: str | None = None) -> MqttSettings:
        env = os.environ
        return cls.from_url(
            url or env.get("KINETIC_MQTT_URL", DEFAULT_URL),
            username=env.get("KINETIC_MQTT_USERNAME") or None,
            password=env.get("KINETIC_MQTT_PASSWORD") or None,
            ca_file=env.get("KINETIC_MQTT_CA_FILE") or None,
            session_per_subscription=_flag(env.get("KINETIC_MQTT_SESSION_PER_SUBSCRIPTION", ""),
                                           "KINETIC_MQTT_SESSION_PER_SUBSCRIPTION"),
        )

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        return ((self.host, self.port), *self.fallbacks)

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return ",".join(f"{scheme}://{host}:{port}" for host, port in self.addresses)


def _flag(value: str, name: str) -> bool:
    if value.strip().lower() in ("", "0", "false", "no", "off"):
        return False
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    raise MqttError(f"{name}={value!r} must be 1 or 0")


class _FailoverClient(paho.Client):
    """A paho client that reconnects with a capped, fully jittered exponential back-off and moves to the
    next broker address on every new attempt.

    paho's own back-off starts at 1 s and doubles to ``max_delay`` without jitter, and it always returns to
    the one address given to ``connect``. Here a lost connection is retried after at most
    ``RECONNECT_FIRST_S`` (on the next node of a cluster), and a broker that is down is polled at least
    every ``RECONNECT_CAP_S``: data flows again within about that long of its return.
    """

    addresses: tuple[tuple[str, int], ...] = ()
    puback_timeout_s = PUBACK_TIMEOUT_S
    backoff_first_s = RECONNECT_FIRST_S
    backoff_cap_s = RECONNECT_CAP_S
    _address_i = 0
    _attempt_n = 0
    _started = False

    def connect_async(self, host: str, port: int = 1883, *args, **kwargs) -> None:
        if (host, port) in self.addresses:
            self._address_i = self.addresses.index((host, port))
        self._started = False
        super().connect_async(host, port, *args, **kwargs)

    def reconnect_delay_set(self, min_delay: float = RECONNECT_FIRST_S, max_delay: float = RECONNECT_CAP_S) -> None:
        """The back-off bounds: the first wait is at most ``min_delay``, no wait exceeds ``max_delay`` (seconds)."""
        self.backoff_first_s, self.backoff_cap_s = float(min_delay), float(max(min_delay, max_delay))

    def reconnect(self) -> paho.MQTTErrorCode:
        # the first call connects where connect()/connect_async() said; each later one (paho calls it after a
        # lost connection or a failed attempt) goes on to the next address of the list
        if self._started and len(self.addresses) > 1:
            self._address_i = (self._address_i + 1) % len(self.addresses)
            self._host, self._port = self.addresses[self._address_i]
        self._started = True
        return super().reconnect()

    def _reconnect_wait(self) -> None:
        with self._reconnect_delay_mutex:
            if self._reconnect_delay is None:  # paho clears it on every successful CONNACK
                self._attempt_n = 0
            bound_s = min(self.backoff_cap_s, self.backoff_first_s * 2 ** min(self._attempt_n, 16))
            self._attempt_n += 1
            self._reconnect_delay = 1  # anything but None until the next CONNACK
        deadline = time.monotonic() + random.uniform(0.0, bound_s)  # noqa: S311 - jitter, not cryptography
        while not self._stopped() and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def loop_misc(self) -> paho.MQTTErrorCode:
        rc = super().loop_misc()
        if rc != paho.MQTTErrorCode.MQTT_ERR_SUCCESS or not self._publish_stalled():
            return rc
        self._easy_log(paho.MQTT_LOG_WARNING, "no PUBACK within %.0f s: reconnecting to send again", self.puback_timeout_s)
        self._sock_close()  # as paho does when a PINGRESP is missing; the loop then reconnects
        self._state = type(self._state).MQTT_CS_CONNECTION_LOST
        self._do_on_disconnect(packet_from_broker=False, v1_rc=paho.MQTTErrorCode.MQTT_ERR_KEEPALIVE)
        return paho.MQTTErrorCode.MQTT_ERR_CONN_LOST

    def _publish_stalled(self) -> bool:
        oldest = time.monotonic() - self.puback_timeout_s
        with self._out_message_mutex:
            return any(m.qos == 1 and m.state == paho.mqtt_ms_wait_for_puback and 0 < m.timestamp < oldest
                       for m in self._out_messages.values())

    def _stopped(self) -> bool:
        """disconnect() or loop_stop() was called: stop waiting (as paho's own wait does)."""
        return self._thread_terminate or getattr(self._state, "name", "") in ("MQTT_CS_DISCONNECTING",
                                                                              "MQTT_CS_DISCONNECTED")


class _BurstReadingClient(_FailoverClient):
    """A paho client whose network thread reads up to ``read_burst_n`` packets per wake-up, through a
    receive buffer.

    paho reads one packet per ``select()``, with one ``recv`` for the command byte, one per byte of the
    remaining length and one for the rest; a consumer of a steady stream of small messages spends much
    of its time in those system calls. Here ``recv`` takes up to ``READ_CHUNK`` bytes at once and paho's
    parser is served from that buffer, and packets are read on while any are waiting. Nothing else
    changes: the same packet parser, callbacks and write path. The buffer is always empty when
    ``loop_read`` returns, so paho's ``select()`` on the socket never sleeps on buffered data. Falls back
    to paho's own ``loop_read`` if this paho version lacks the internals it uses. Messages go straight
    to ``on_message`` unless a filtered callback (``message_callback_add``) exists.
    """

    read_burst_n = 1
    #: bytes asked of the socket per ``recv`` (a typical raw batch is ~2.3 kB)
    READ_CHUNK = 65536
    _rbuf = b""
    _rpos = 0
    _rsock = None
    _refill = True

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: nothing buffered belongs to it
            self._rsock, self._rbuf, self._rpos = self._sock, b"", 0
        avail = len(self._rbuf) - self._rpos
        if avail <= 0:
            if not self._refill:
                raise BlockingIOError()
            data = super()._sock_recv(max(bufsize, self.READ_CHUNK))
            if not data:
                return data  # connection closed
            self._rbuf, self._rpos, avail = data, 0, len(data)
        n = min(bufsize, avail)
        out = self._rbuf[self._rpos : self._rpos + n]
        self._rpos += n
        return out

    _filtered = False  # message_callback_add() used: paho's own dispatch

    def message_callback_add(self, sub: str, callback) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        # paho matches every message's topic against the filtered callbacks (a trie walk per message) before
        # it calls on_message; with none registered, call on_message directly (errors handled as paho does)
        on_message = self.on_message
        if self._filtered or on_message is None:
            super()._handle_on_message(message)
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        read, handle = getattr(self, "_packet_read", None), getattr(self, "_loop_rc_handle", None)
        if read is None or handle is None or not hasattr(self, "_sock"):
            return super().loop_read(max_packets)
        for _ in range(max(self.read_burst_n, max_packets)):
            if self._sock is None:
                return paho.MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = read()
            if rc > 0:
                return handle(rc)
            if rc == paho.MQTTErrorCode.MQTT_ERR_AGAIN:
                return paho.MQTTErrorCode.MQTT_ERR_SUCCESS  # nothing more waiting (the buffer is empty)
        # burst done: parse what is still buffered (less than READ_CHUNK) without reading the socket again
        self._refill = False
        try:
            while self._sock is not None and self._rpos < len(self._rbuf):
                rc = read()
                if rc > 0:
                    return handle(rc)
                if rc == paho.MQTTErrorCode.MQTT_ERR_AGAIN:
                    break
        finally:
            self._refill = True
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS


def make_client(
    settings: MqttSettings,
    *,
    client_id: str | None = None,
    clean_session: bool = True,
    will: tuple[str, bytes, int, bool] | None = None,
    read_burst_n: int = 1,
) -> paho.Client:
    """A paho client (MQTT 3.1.1) configured from ``settings``; not yet connected.

    ``read_burst_n`` > 1 lets the network thread read that many waiting packets per wake-up
    (high-rate consumers such as the processing service)."""
    client_class: type[_FailoverClient] = _FailoverClient if read_burst_n <= 1 else _BurstReadingClient
    client = client_class(
        callback_api_version=paho.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"kc-{uuid.uuid4().hex[:12]}",
        clean_session=clean_session,
        protocol=paho.MQTTv311,
    )
    client.addresses = settings.addresses
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    if isinstance(client, _BurstReadingClient):
        client.read_burst_n = read_burst_n
    client.max_inflight_messages_set(50)
    client.max_queued_messages_set(0)
    return client


def connect(client: paho.Client, settings: MqttSettings, *, timeout_s: float = 10.0) -> None:
    """Connect and start paho's network thread; raise MqttConnectError if no CONNACK within ``timeout_s``.

    Paho keeps reconnecting by itself afterwards.
    """
    done = threading.Event()
    result: list[tuple[paho.ConnectFlags, ReasonCode, Properties | None]] = []

    def on_connect(_c, _u, flags: paho.ConnectFlags, reason_code: ReasonCode, props: Properties | None) -> None:
        result.append((flags, reason_code, props))
        done.set()

    previous = client.on_connect
    client.on_connect = on_connect
    errors = []
    for host, port in settings.addresses:  # the first broker that accepts the TCP connection
        try:
            client.connect(host, port, keepalive=settings.keepalive_s)
            break
        except (OSError, ssl.SSLError) as exc:
            errors.append(f"{host}:{port}: {exc}")
    else:
        client.on_connect = previous
        raise MqttConnectError(f"cannot reach the broker at {settings.url}: {'; '.join(errors)}")
    client.loop_start()
    if not done.wait(timeout_s):
        client.loop_stop()
        raise MqttConnectError(f"no answer from the broker at {settings.url} within {timeout_s:.0f} s")
    client.on_connect = previous
    flags, rc, props = result[0]
    if rc.is_failure:
        client.loop_stop()
        raise MqttConnectError(f"the broker at {settings.url} refused the connection: {rc}")
    if previous is not None:  # a VERSION2 callback, as every client of make_client
        cast("paho.CallbackOnConnect_v2", previous)(client, client.user_data_get(), flags, rc, props)


_PUBACK = struct.Struct("!BBH")


def ack_all(client: paho.Client, mids: list[int]) -> None:
    """Acknowledge received QoS 1 messages (manual acknowledgement) with one socket write.

    ``client.ack(mid, 1)`` queues one 4-byte PUBACK per message, wakes the network thread and
    sends each with its own system call; after a group commit of hundreds of messages that is
    a measurable share of the worker's time. Here the PUBACKs go out as one buffer. Falls
    back to ``client.ack`` if this paho version lacks the internal queue it relies on.
    """
    if not mids:
        return
    queue = getattr(client, "_packet_queue", None)
    if queue is None or not getattr(client, "_manual_ack", False):
        for mid in mids:
            client.ack(mid, 1)
        return
    queue(paho.PUBACK, b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids]), 0, 1)


def broker_reachable(settings: MqttSettings, *, timeout_s: float = 2.0) -> bool:
    """True when a TCP connection to one of the broker addresses succeeds."""
    for address in settings.addresses:
        try:
            with socket.create_connection(address, timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


def purge_session(settings: MqttSettings, client_id: str, *, timeout_s: float = 5.0) -> None:
    """Discard the broker's persistent session of ``client_id`` (connect once with a clean session)."""
    client = make_client(settings, client_id=client_id, clean_session=True)
    connect(client, settings, timeout_s=timeout_s)
    client.disconnect()
    client.loop_stop()
