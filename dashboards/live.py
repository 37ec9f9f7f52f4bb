"""What the dashboards hear from the broker: retained collector/insole status and live raw frames.

:class:`LiveFeed` holds the state and handles one message at a time (:meth:`LiveFeed.handle`,
a plain method, so tests feed it directly); :class:`MqttLiveFeed` wires it to the broker
through :mod:`transport.mqtt`: the status topics of every patient (retained, so the state is
known right after connecting) and, only while somebody watches a patient's live view, that
patient's raw topics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from contextlib import contextmanager

import numpy as np

from dashboards.plots import foot_frame, foot_outline
from insole_common import topics
from insole_common.codec import decode_batch
from insole_common.errors import InsoleError
from insole_common.layouts import LAYOUTS_BY_WIRE_ID, centre_of_pressure
from insole_common.messages import CollectorStatus, InsoleStatus, parse_message
from transport.mqtt import MqttSettings, connect, make_client

log = logging.getLogger(__name__)

#: COP points kept per foot for the live trail (at 100 Hz: two seconds)
TRAIL_N = 200
#: a foot whose last frame is older than this is shown as "no data"
STALE_S = 5.0


class LiveFeed:
    """Latest status and frames per patient; no broker (every status "unknown") until wired to one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, dict[str, dict]] = defaultdict(dict)
        self._frames: dict[tuple[str, str], dict] = {}
        self._trails: dict[tuple[str, str], deque] = {}
        self._watchers: dict[str, int] = defaultdict(int)
        self.connected = False
        self.messages_n = 0

    # messages -----------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, *, now_s: float | None = None) -> None:
        """Take one message; bad ones are logged and dropped (the processing service audits them)."""
        now_s = time.time() if now_s is None else now_s
        try:
            info = topics.parse_topic(topic)
            if info.kind == "status" and info.sub is not None:  # parse_topic: a status topic always has one
                msg = parse_message(payload)
                if isinstance(msg, (CollectorStatus, InsoleStatus)):
                    with self._lock:
                        self._status[info.patient][info.sub] = {**msg.model_dump(exclude={"v", "type"}), "received_s": now_s}
            elif info.kind == "raw":
                self._on_batch(info.patient, decode_batch(payload), now_s)
        except InsoleError as exc:
            log.debug("live feed dropped a message on %s: %s", topic, exc)
        self.messages_n += 1

    def _on_batch(self, patient: str, batch, now_s: float) -> None:
        layout = LAYOUTS_BY_WIRE_ID.get(batch.layout_id)
        p = batch.pressure
        key = (patient, batch.side)
        with self._lock:
            trail = self._trails.setdefault(key, deque(maxlen=TRAIL_N))
            if layout is not None and layout.n_channels == batch.n_channels:
                ap, ml = centre_of_pressure(layout, p, min_total=1.0)
                trail.extend((round(float(a), 4), round(float(m), 4)) for a, m in zip(ap, ml, strict=True) if np.isfinite(a))
            last = self._frames.get(key)
            if last is None or batch.first_seq >= last["seq"]:
                self._frames[key] = {"seq": batch.last_seq, "pressure": p[-1].copy(), "layout": layout,
                                     "t_us": int(batch.collector_time_us + (batch.n_frames - 1) * 1e6 / batch.sample_rate_hz),
                                     "received_s": now_s, "unit": batch.pressure_unit.label}

    # reading ------------------------------------------------------------------------------------
    def status(self, patient: str) -> dict:
        with self._lock:
            s = dict(self._status.get(patient, {}))
        return {"broker": self.connected, "collector": s.get("collector"), "L": s.get("L"), "R": s.get("R")}

    def snapshot(self, patient: str, *, now_s: float | None = None) -> dict:
        """The latest frame and COP trail of each foot, as the live view draws them."""
        now_s = time.time() if now_s is None else now_s
        feet = {}
        for side in ("L", "R"):
            with self._lock:
                frame = self._frames.get((patient, side))
                trail = list(self._trails.get((patient, side), ()))
            if frame is None or frame["layout"] is None:
                continue
            picture = foot_frame(frame["layout"], frame["pressure"])
            picture.update(trail=trail, t_us=frame["t_us"], unit=frame["unit"],
                           stale=now_s - frame["received_s"] > STALE_S)
            feet[side] = picture
        return {"patient": patient, "outline": foot_outline(), "feet": feet, "time_s": now_s}

    # watching -----------------------------------------------------------------------------------
    @contextmanager
    def watch(self, patient: str):
        """Receive ``patient``'s raw frames while inside (reference-counted across viewers)."""
        with self._lock:
            self._watchers[patient] += 1
            first = self._watchers[patient] == 1
        if first:
            self._subscribe_raw(patient)
        try:
            yield self
        finally:
            with self._lock:
                self._watchers[patient] -= 1
                last = self._watchers[patient] == 0
                if last:
                    del self._watchers[patient]
                    self._frames.pop((patient, "L"), None), self._frames.pop((patient, "R"), None)
                    self._trails.pop((patient, "L"), None), self._trails.pop((patient, "R"), None)
            if last:
                self._unsubscribe_raw(patient)

    def _subscribe_raw(self, patient: str) -> None:  # no broker: nothing to do
        pass

    def _unsubscribe_raw(self, patient: str) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class MqttLiveFeed(LiveFeed):
    """A :class:`LiveFeed` subscribed to the broker (QoS 0 for live frames: late frames are worthless)."""

    def __init__(self, settings: MqttSettings, *, client_id: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self._client = make_client(settings, client_id=client_id, clean_session=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = lambda _c, _u, m: self.handle(m.topic, bytes(m.payload))

    @staticmethod
    def _status_filters() -> list[str]:
        """Every patient's status topics under the topic root in use (``topics.root()``, KINETIC_TOPIC_ROOT)."""
        return topics.partition_filters("status/+")

    def _on_connect(self, client, _u, _flags, rc, _props) -> None:
        if getattr(rc, "is_failure", False):
            return
        self.connected = True
        client.subscribe([(f, 1) for f in self._status_filters()] + [(t, 0) for p in list(self._watchers) for t in self._raw(p)])

    def _on_disconnect(self, *_args) -> None:
        self.connected = False

    @staticmethod
    def _raw(patient: str) -> list[str]:
        return [topics.raw_topic(patient, "L"), topics.raw_topic(patient, "R")]

    def start(self) -> None:
        """Connect (paho reconnects by itself later); raises MqttConnectError when the broker cannot be reached."""
        connect(self._client, self.settings)
        self.connected = True

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self.connected = False

    def _subscribe_raw(self, patient: str) -> None:
        self._client.subscribe([(t, 0) for t in self._raw(patient)])

    def _unsubscribe_raw(self, patient: str) -> None:
        self._client.unsubscribe(self._raw(patient))
