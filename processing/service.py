"""The processing service: MQTT ingest -> exactly-once raw store -> sessions -> gait analytics.

Message handling is a plain method (:meth:`ProcessingService.handle`) so that the
logic is the same under the real broker and in tests; :meth:`~ProcessingService.run` wires it to
paho with QoS 1, a persistent session (``clean_session=False``, fixed client id)
and manual acknowledgement: a message is acknowledged only after what it
carried is committed, so a crash before the commit means redelivery, never loss.

The service is composed of its parts, one module each: message handling and the hot path with its
group commit (:mod:`processing.ingest`), provisional live strides (:mod:`processing.live_strides`, over
the helper :mod:`processing.live`), sessions and their final analysis (:mod:`processing.sessions`), and
the state they share (:mod:`processing.state`). This module holds the MQTT run loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from insole_common import topics
from insole_common.messages import StridesMessage
from processing.analytics.online import OnlineStride
from processing.detection_settings import DetectionSettings
from processing.ingest import GROUP_COMMIT_N, IngestMixin, _live_spec
from processing.live import LiveProcess
from processing.live_strides import LIVE_ANNOUNCE_S, LiveStridesMixin
from processing.sessions import SessionsMixin, recording_from_batches, run_analytics
from processing.state import ServiceStats
from processing.summaries import backfill_weekly_summaries
from storage.archive import RawArchive
from storage.store import Store, StoreUnavailableError
from transport.mqtt import MqttSettings, ack_all, connect, make_client

__all__ = ["GROUP_COMMIT_N", "ProcessingService", "ServiceStats", "_live_spec", "recording_from_batches",
           "run_analytics"]

log = logging.getLogger(__name__)

#: messages waiting for the worker beyond this make paho stop reading (the broker then holds them)
INBOX_MAX_N = 10_000
#: while the live-analysis helper still owes replies, an idle worker looks for them this often (s)
LIVE_POLL_S = 0.05
#: a group smaller than ``group_commit_n`` waits this long for more messages before it is handled (s): each
#: transaction, acknowledgement and hand-over to the live analysis has a fixed cost, which dominates when messages
#: trickle in one or two at a time (docs/benchmarks.md, "Capacity on one box"); a backlog is never held back
GROUP_WAIT_S = 0.01
#: when the inbox is empty, wait this long for the helper process's live strides before going on
LIVE_WAIT_S = 0.25


class ProcessingService(IngestMixin, LiveStridesMixin, SessionsMixin):
    def __init__(
        self,
        store: Store,
        *,
        inactivity_s: float = 300.0,
        partitions: list[int] | None = None,
        analyze_on_close: bool = True,
        archive: RawArchive | None = None,
        group_commit_n: int = GROUP_COMMIT_N,
        group_wait_s: float = GROUP_WAIT_S,
        live_strides: bool = True,
        live_process: bool = False,
        detection_settings: DetectionSettings | None = None,
    ) -> None:
        #: compensation detection's settings, read once here (default: the deployment's, KINETIC_DETECTION_CONFIG)
        #: so that a bad file stops the service at start (ValidationError naming the key), not at a session's close
        self.detection_settings = detection_settings or DetectionSettings.from_env()
        self.store = store
        self.archive = archive
        #: at most this many queued messages are handled in one transaction and acknowledged together
        self.group_commit_n = group_commit_n
        self.group_wait_s = group_wait_s
        self.live_strides = live_strides
        self.inactivity_s = inactivity_s
        self.partitions = partitions
        self.analyze_on_close = analyze_on_close
        self.live_process = live_process
        self._init_state()
        store.migrate()
        backfill_weekly_summaries(store)
        self._resume_open_sessions()

    def _resume_open_sessions(self) -> None:
        """Take up the sessions a previous run left open."""
        for session in self.store.open_sessions():
            sid = session.session_id
            self._open[session.patient] = sid
            b = self.store.latest_session_batch(sid)
            if b is None:
                self._last_data_us[sid] = session.start_us
            else:
                self._last_data_us[sid] = b.collector_time_us + int(b.n_frames * 1e6 / b.sample_rate_hz)
            self._last_seen[sid] = time.monotonic()  # a restart gives open sessions a full grace period
            stop = self.store.session_stop(sid)
            if stop is not None:  # stopped, its last batches not yet stored: waits for them as before
                self._stopping[sid] = (stop.time_us, stop.reason, stop.ends, time.monotonic())

    # MQTT --------------------------------------------------------------------------------------
    def run(self, mqtt: MqttSettings, *, client_id: str = "kinetic-processing", stop: threading.Event | None = None,
            ready: threading.Event | None = None, persistent: bool = True) -> None:
        """Consume from the broker until ``stop`` is set.

        ``persistent`` keeps a broker-side session under ``client_id`` (QoS 1 messages wait
        for the worker while it is down); one-off runs and tests pass False.
        """
        stop = stop or threading.Event()
        # paho's threads append, this one takes groups; a deque and an event cost less per message than a Queue
        inbox: deque = deque()
        arrived = threading.Event()
        clients = self._subscribed_clients(mqtt, client_id, persistent, stop, inbox, arrived)
        self.inbox_depth = inbox.__len__
        self.live_write_every_s = LIVE_ANNOUNCE_S
        if self.live_strides and self.live_process and self._live_proc is None:
            self._live_clear()
            self._live_proc = LiveProcess()
        if ready is not None:
            ready.set()
        try:
            self._consume(stop, inbox, arrived)
        finally:
            self._write_live_now()  # live strides held back under load
            for client in clients:
                client.disconnect()
                client.loop_stop()
            if self._live_proc is not None:
                self._live_proc.close()
                self._live_proc = None

    def _sessions(self, client_id: str, session_per_subscription: bool) -> list[tuple[str, list[str]]]:
        """The broker sessions of this worker, each as (client id, topic filters): one session with every filter of
        the worker's partitions, or one session per filter (``MqttSettings.session_per_subscription``, for NATS:
        there a session may hold only as many unacknowledged messages as one of its subscriptions, and what goes
        beyond waits for ``ack_wait``; docs/scale.md, "Workers on the cluster")."""
        kinds = (("raw", "raw/+"), ("session", "session"))
        if not session_per_subscription:
            return [(client_id, [f for _name, kind in kinds for f in topics.partition_filters(kind, self.partitions)])]
        parts = ["all"] if self.partitions is None else [f"{p:02d}" for p in self.partitions]
        return [(f"{client_id}-{name}-{part}", [f]) for name, kind in kinds
                for part, f in zip(parts, topics.partition_filters(kind, self.partitions), strict=True)]

    def _subscribed_clients(self, mqtt: MqttSettings, client_id: str, persistent: bool, stop: threading.Event,
                            inbox: deque, arrived: threading.Event) -> list:
        """Paho clients connected (at once) and subscribed to this worker's partitions, one per broker session
        (:meth:`_sessions`), all appending ``(topic, payload, mid, qos, client)`` to ``inbox``; the service's
        announcements (live strides, flags) are published through the first."""
        sessions = self._sessions(client_id, mqtt.session_per_subscription)

        def on_message(c, _u, message):
            inbox.append((message.topic, message.payload, message.mid, message.qos, c))
            if not arrived.is_set():
                arrived.set()
            while len(inbox) > INBOX_MAX_N and not stop.is_set():  # back-pressure: paho stops reading
                time.sleep(0.005)

        def subscribed_client(session: tuple[str, list[str]]):
            sid, filters = session
            client = make_client(mqtt, client_id=sid, clean_session=not persistent, read_burst_n=self.group_commit_n)
            client.manual_ack_set(True)
            subscribed = threading.Event()

            def on_connect(c, _u, _flags, rc, _props):
                if not getattr(rc, "is_failure", False):
                    c.subscribe([(f, 1) for f in filters])

            def on_subscribe(_c, _u, _mid, reason_codes, _props):
                failed = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
                if failed:
                    log.error("the broker refused subscriptions of %s: %s", sid, failed)
                subscribed.set()

            client.on_connect = on_connect
            client.on_subscribe = on_subscribe
            client.on_message = on_message
            connect(client, mqtt)
            if not subscribed.wait(10):
                log.warning("no SUBACK from the broker within 10 s for %s; continuing", sid)
            return client

        with ThreadPoolExecutor(max_workers=min(len(sessions), 16)) as pool:  # (a NATS session takes ~0.1 s to set up)
            futures = [pool.submit(subscribed_client, session) for session in sessions]
        clients, errors = [], []
        for future in futures:
            try:
                clients.append(future.result())
            except Exception as exc:  # noqa: BLE001 - the clients already connected are closed, then it is raised
                errors.append(exc)
        if errors:
            for client in clients:
                client.disconnect()
                client.loop_stop()
            raise errors[0]
        publisher = clients[0]

        def publish_strides(patient: str, session_id: str, strides: list[tuple[str, OnlineStride]]) -> None:
            # times on the collector time base (Unix seconds), as the contract says
            # (validated from plain dicts in one call: cheaper than a StrideRecord per stride)
            msg = StridesMessage.model_validate({"session_id": session_id, "strides": [
                dict(zip(OnlineStride._fields, st, strict=False), side=side) for side, st in strides]})
            publisher.publish(topics.strides_topic(patient), msg.to_json(), qos=1)

        self.on_live_strides = publish_strides
        self.on_flag = lambda patient, msg: publisher.publish(topics.flags_topic(patient), msg.to_json(), qos=1)
        return clients

    def _consume(self, stop: threading.Event, inbox: deque, arrived: threading.Event) -> None:
        """The ingest loop: groups of queued messages, each in one transaction, acknowledged after its commit (each
        on the client, i.e. the broker session, it came from); a group the database could not take is retried (with
        back-off) until it can."""
        retry: list | None = None
        backoff_s = 0.5
        next_idle_check = time.monotonic() + 1.0
        while not stop.is_set():
            if retry is None:
                if not inbox:  # (a shorter nap while the live analysis still owes replies)
                    arrived.wait(LIVE_POLL_S if self.live_outstanding_n else 0.5)
                if inbox and len(inbox) < self.group_commit_n and self.group_wait_s > 0:
                    stop.wait(self.group_wait_s)  # let a trickle gather into one transaction
                arrived.clear()  # before taking: a message appended from now on sets it again
                group = [inbox.popleft() for _ in range(min(len(inbox), self.group_commit_n))]
            else:
                group = retry
            if time.monotonic() >= next_idle_check:  # also while data keeps arriving
                next_idle_check = time.monotonic() + 1.0
                try:
                    self.close_idle_sessions()
                except StoreUnavailableError as exc:
                    log.warning("database unavailable while closing idle sessions: %s", exc)
                except Exception as exc:  # noqa: BLE001 - never stop serving everyone for one session (counted)
                    self.warn("session_failed", "closing idle sessions failed: %s: %s", type(exc).__name__, exc)
            if not group:
                self._when_idle()
                continue
            failure = self._commit_group(group, more_waiting=bool(inbox))
            if failure is not None:
                log.warning("database unavailable (%s); retrying %d messages in %.1f s", failure, len(group), backoff_s)
                retry = group
                stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 10.0)
                continue
            retry, backoff_s = None, 0.5
            self.stats.groups_n += 1
            self.flush_outgoing(all_live=not inbox)  # announced only after the commit
            # acknowledged only after the commit, each on its own client
            acks: dict = {}
            for _t, _p, mid, qos, client in group:
                if qos == 1:
                    acks.setdefault(client, []).append(mid)
            for client, mids in acks.items():
                ack_all(client, mids)
            for _t, _p, mid, qos, client in group:
                if qos == 2:
                    client.ack(mid, qos)
            if not inbox and self.live_outstanding_n:  # idle: store what the live analysis has finished
                self._collect_live_or_drop(LIVE_WAIT_S)

    def _commit_group(self, group: list[tuple], *, more_waiting: bool) -> StoreUnavailableError | None:
        """Handle a group of ``(topic, payload, mid, qos, client)`` in one transaction (group commit). When the database
        was unavailable (returned): nothing of the group was committed and its effects are forgotten (it stays
        unacknowledged for a retry; paho stops reading once the inbox is full)."""
        saved = self._save_state()
        try:
            with self.store.transaction():
                self.handle_group([(m[0], m[1]) for m in group])
                self._write_live(force=not more_waiting)
        except StoreUnavailableError as exc:
            self._restore_state(saved)
            self.stats.store_retries_n += 1
            return exc
        return None

    def _when_idle(self) -> None:
        """Nothing queued: store the live analysis' late replies, send out what was held back under load."""
        if self.live_outstanding_n:  # replies that came after the last wait for them
            self._collect_live_or_drop(0.0)
        if self._live_rows or self._live_announce:
            self._write_live_now()

    def _collect_live_or_drop(self, timeout_s: float) -> None:
        try:
            self.collect_live(timeout_s)
        except StoreUnavailableError as exc:  # provisional strides: dropped, not retried
            log.warning("database unavailable while storing live strides: %s", exc)
