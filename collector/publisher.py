"""Drain the outbox to the broker: publish in order, delete on PUBACK.

Paho keeps unacknowledged QoS 1 messages and re-sends them, in order, after a
reconnect; across a collector restart the outbox itself re-sends everything not
yet acknowledged. The processing service drops the resulting duplicates by
(device, sequence number), so delivery is exactly-once end to end.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as paho

from storage.outbox import Outbox
from storage.spool import Spool

log = logging.getLogger(__name__)


class OutboxPublisher:
    """Publishes outbox rows through a connected paho client, ``window`` in flight at a time."""

    def __init__(self, outbox: Outbox | Spool, client: paho.Client, *, window: int = 40) -> None:
        self.outbox = outbox
        self.client = client
        self.window = window
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox id
        self._early: set[int] = set()  # PUBACKs that beat the bookkeeping
        self._last_sent_id = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published_n = 0
        self.acked_n = 0
        client.on_publish = self._on_publish
        client.on_connect = self._on_connect

    # paho callbacks (network thread) -------------------------------------------------
    def _on_publish(self, _client, _userdata, mid, _reason_code, _properties) -> None:
        with self._lock:
            item_id = self._inflight.pop(mid, None)
            if item_id is None:
                self._early.add(mid)
                return
        self.outbox.ack(item_id)
        self.acked_n += 1
        self._wake.set()

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if not getattr(reason_code, "is_failure", False):
            log.info("connected to the broker; %d messages waiting in the outbox", len(self.outbox))
        self._wake.set()

    # drain thread -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-publisher", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Tell the publisher that new rows are in the outbox."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            self._drain_once()

    def _drain_once(self) -> None:
        if not self.client.is_connected():
            return
        with self._lock:
            room = self.window - len(self._inflight)
        if room <= 0:
            return
        for item in self.outbox.peek(after_id=self._last_sent_id, limit=room):
            with self._lock:
                # PUBACKs of other publishes on this client (status messages) also land in _early; only one
                # that arrives between this publish() and the bookkeeping below may count, since paho reuses
                # mids after 65 535 publishes and a stale one would delete an unacknowledged row
                self._early.clear()
            info = self.client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                log.warning("publish of outbox row %d refused by paho (%s); will retry", item.id, paho.error_string(info.rc))
                break
            # NO_CONN: paho queued it and sends it after reconnecting, so it is in flight either way
            self._last_sent_id = item.id
            self.published_n += 1
            ack_now = False
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    ack_now = True
                else:
                    self._inflight[info.mid] = item.id
            if ack_now:
                self.outbox.ack(item.id)
                self.acked_n += 1

    @property
    def inflight_n(self) -> int:
        with self._lock:
            return len(self._inflight)

    def wait_until_empty(self, timeout_s: float) -> bool:
        """Block until every outbox row has been acknowledged (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.outbox) == 0:
                return True
            self._wake.set()
            time.sleep(0.05)
        return len(self.outbox) == 0

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
