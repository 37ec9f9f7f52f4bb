"""The processing service: MQTT ingest -> exactly-once raw store -> sessions -> gait analytics.

Message handling is a plain method (:meth:`ProcessingService.handle`) so that the
logic is the same under the real broker and in tests; :meth:`run` wires it to
paho with QoS 1, a persistent session (``clean_session=False``, fixed client id)
and manual acknowledgement: a message is acknowledged only after what it
carried is committed, so a crash before the commit means redelivery, never loss.

Bad input (undecodable payload, unknown topic, invalid JSON) is counted by
reason, logged, written to the ``rejections`` audit table and acknowledged, so it
never blocks the good messages behind it.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from insole_common import topics
from insole_common.codec import Batch, decode_batch
from insole_common.errors import InsoleError
from insole_common.layouts import LAYOUTS_BY_WIRE_ID
from insole_common.messages import SessionMessage, StrideRecord, StridesMessage, parse_message
from insole_common.recording import FootRecording, Recording
from kinetic.mqtt import MqttSettings, connect, make_client
from processing.analytics import consts as C
from processing.archive import RawArchive
from processing.store import Store, StoreUnavailableError

log = logging.getLogger(__name__)


@dataclass
class ServiceStats:
    messages_n: int = 0
    batches_n: int = 0
    frames_accepted_n: int = 0
    frames_duplicate_n: int = 0
    sessions_closed_n: int = 0
    store_retries_n: int = 0
    live_strides_n: int = 0
    flags_n: int = 0
    rejected: Counter = field(default_factory=Counter)

    @property
    def rejected_n(self) -> int:
        return sum(self.rejected.values())


def day_of(time_us: int) -> str:
    """Calendar day (UTC) of a timestamp, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(time_us / 1e6, tz=timezone.utc).strftime("%Y-%m-%d")


@dataclass
class _LiveSide:
    seq0: int
    next_seq: int
    pending: list = field(default_factory=list)  # (pressure, acc, gyro) chunks not yet fed
    pending_n: int = 0
    fed_seq: int = 0  # seq (grid index) where the pending data starts


class _LiveSession:
    """Provisional strides while a session runs: the stream in sequence order, gaps as NaN rows,
    fed to the streaming analyzer in chunks of ``chunk_s`` (small chunks cost ~5 ms each)."""

    def __init__(self, origin_us: int, first: Batch, *, chunk_s: float) -> None:
        from processing.analytics import StreamingAnalyzer

        self.origin_us = origin_us
        layout = LAYOUTS_BY_WIRE_ID.get(first.layout_id)
        layout = layout if layout is not None and layout.n_channels == first.n_channels else None
        cfg = dict(sampling_rate_hz=first.sample_rate_hz, layout=layout, pressure_unit=first.pressure_unit.label,
                   n_channels=first.n_channels, t0_s=0.0)
        self.rate_hz = first.sample_rate_hz
        self.chunk_n = max(1, int(chunk_s * self.rate_hz))
        self.analyzer = StreamingAnalyzer({side: dict(cfg) for side in ("L", "R")})
        self.sides: dict[str, _LiveSide] = {}

    def gap_frames(self, batch: Batch) -> int:
        """Frames missing between what this foot's stream has seen and ``batch`` (0 for a new foot)."""
        side = self.sides.get(batch.side)
        return 0 if side is None else max(0, batch.first_seq - side.next_seq)

    def feed(self, batch: Batch) -> pd.DataFrame | None:
        side = self.sides.get(batch.side)
        if side is None:
            # both feet share a grid starting at the session's first batch; NaN lead-in for the later foot
            lead = max(0, int(round((batch.collector_time_us - self.origin_us) / 1e6 * self.rate_hz)))
            lead = min(lead, int(MAX_LIVE_GAP_S * self.rate_hz))
            seq0 = batch.first_seq - lead
            side = self.sides[batch.side] = _LiveSide(seq0=seq0, next_seq=seq0, fed_seq=seq0)
        if batch.first_seq + batch.n_frames <= side.next_seq or batch.sample_rate_hz != self.rate_hz:
            return None  # already seen (a duplicate or a late, reordered batch): the final analysis has it
        skip = max(0, side.next_seq - batch.first_seq)
        gap = max(0, batch.first_seq - side.next_seq)
        n_ch = batch.n_channels
        if gap:
            side.pending.append((np.full((gap, n_ch), np.nan),
                                 None if batch.imu_raw is None else np.full((gap, 3), np.nan),
                                 None if batch.imu_raw is None else np.full((gap, 3), np.nan)))
        side.pending.append((batch.pressure[skip:], None if batch.imu_raw is None else batch.acc_g[skip:],
                             None if batch.imu_raw is None else batch.gyro_dps[skip:]))
        added = gap + batch.n_frames - skip
        side.next_seq += added
        side.pending_n += added
        if side.pending_n < self.chunk_n:
            return None
        pressure = np.vstack([p for p, _, _ in side.pending])
        imu = side.pending[0][1] is not None and all(a is not None for _, a, _ in side.pending)
        acc = np.vstack([a for _, a, _ in side.pending]) if imu else None
        gyro = np.vstack([g for _, _, g in side.pending]) if imu else None
        t0_s = (side.fed_seq - side.seq0) / self.rate_hz
        side.fed_seq += side.pending_n
        side.pending, side.pending_n = [], 0
        return self.analyzer.feed(batch.side, t0_s, pressure, acc_g=acc, gyro_dps=gyro)


class ProcessingService:
    def __init__(
        self,
        store: Store,
        *,
        inactivity_s: float = 300.0,
        partitions: list[int] | None = None,
        analyze_on_close: bool = True,
        archive: RawArchive | None = None,
        group_commit_n: int = 256,
        live_strides: bool = True,
        live_chunk_s: float = 5.0,
    ) -> None:
        self.store = store
        self.archive = archive
        #: at most this many queued messages are handled in one transaction and acknowledged together
        self.group_commit_n = group_commit_n
        self.live_strides = live_strides
        self.live_chunk_s = live_chunk_s
        self.inactivity_s = inactivity_s
        self.partitions = partitions
        self.analyze_on_close = analyze_on_close
        self.stats = ServiceStats()
        self._open: dict[str, str] = {}  # patient -> open session id
        self._live: dict[str, _LiveSession] = {}  # session id -> provisional live analysis
        #: called with (patient, session_id, strides DataFrame) for provisional strides; set by run()
        self.on_live_strides = None
        #: called with (patient, FlagMessage) for each new compensation flag event; set by run()
        self.on_flag = None
        #: "wall" stamps flags with the service's clock; "data" with the session's own time (replays, demo)
        self.detection_clock = "wall"
        self._last_data_us: dict[str, int] = {}  # session id -> end of its latest data (collector time)
        #: session id -> time.monotonic() of its latest message: inactivity is about arrivals, not data
        #: time (a replay of old data must not look idle)
        self._last_seen: dict[str, float] = {}
        #: messages to publish once the current transaction has committed (flags, live strides)
        self._outgoing: list = []
        store.migrate()
        for row in store.query("SELECT session_id, patient, start_us FROM sessions WHERE state = 'open'").itertuples():
            self._open[row.patient] = row.session_id
            last = store.query("SELECT payload FROM raw_batches WHERE session_id = ? ORDER BY collector_time_us DESC "
                               "LIMIT 1", (row.session_id,))
            if last.empty:
                self._last_data_us[row.session_id] = int(row.start_us)
            else:
                b = decode_batch(bytes(last["payload"][0]))
                self._last_data_us[row.session_id] = b.collector_time_us + int(b.n_frames * 1e6 / b.sample_rate_hz)
            self._last_seen[row.session_id] = time.monotonic()  # a restart gives open sessions a full grace period

    # message handling ---------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, *, now_us: int | None = None) -> None:
        """Process one MQTT message. Never raises for bad input: it is rejected and counted."""
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        self.stats.messages_n += 1
        saved = self._save_state() + (len(self._outgoing),)
        try:
            # its own (nested) transaction: a message that fails undoes exactly its own writes
            with self.store.transaction():
                info = topics.parse_topic(topic)
                if info.kind == "raw":
                    batch = decode_batch(payload)
                    if batch.side != info.sub:
                        raise _Mismatch(f"batch says side {batch.side} but arrived on the {info.sub} topic")
                    self._on_batch(info.patient, batch, payload)
                elif info.kind == "session":
                    msg = parse_message(payload)
                    if not isinstance(msg, SessionMessage) or msg.patient != info.patient:
                        raise _Mismatch("session topic carries a message that is not this patient's session message")
                    self._on_session(msg)
                elif info.kind in ("status", "strides", "flags", "control"):
                    parse_message(payload)  # validated; the dashboard reads retained status itself
        except StoreUnavailableError:
            raise  # not the message's fault: the caller retries it
        except InsoleError as exc:
            self._undo_message(saved)
            self._reject(topic, exc.reason, str(exc), payload, now_us)
        except Exception as exc:  # noqa: BLE001 - one message must never stop the service
            log.exception("internal error on a message on %s", topic)
            self._undo_message(saved)
            self._reject(topic, "internal_error", f"{type(exc).__name__}: {exc}", payload, now_us)

    def _undo_message(self, saved: tuple) -> None:
        """Forget the in-memory effects of a rejected message (its writes were rolled back)."""
        rejected = self.stats.rejected
        self._open, self._last_data_us, self._last_seen = dict(saved[0]), dict(saved[1]), dict(saved[2])
        messages_n = self.stats.messages_n
        self.stats = saved[3]
        self.stats.messages_n, self.stats.rejected = messages_n, rejected
        del self._outgoing[saved[4]:]  # results queued by earlier messages of the group stay
        self._live.clear()

    def _reject(self, topic: str, reason: str, message: str, payload: bytes, now_us: int) -> None:
        self.stats.rejected[reason] += 1
        log.warning("rejected message on %s (%s): %s", topic, reason, message)
        self.store.record_rejection(now_us, topic, reason, message, payload)

    def _on_batch(self, patient: str, batch: Batch, payload: bytes | None = None) -> None:
        if batch.last_seq >= 2**63:
            raise _Implausible(f"sequence numbers up to {batch.last_seq} exceed the store's signed 64-bit range")
        _check_time(batch.collector_time_us, "collector_time_us")
        session_id = self._open.get(patient)
        if session_id is None:  # data without a start message: open an implicit session
            session_id = f"auto-{patient}-{batch.collector_time_us // 1_000_000}"
            self.store.open_session(session_id, patient, batch.collector_time_us, {batch.side: batch.device_id})
            self._open[patient] = session_id
        result = self.store.add_raw_batch(batch, patient, session_id, payload=payload)
        self.stats.batches_n += 1
        self.stats.frames_accepted_n += result.accepted_frames_n
        self.stats.frames_duplicate_n += result.duplicate_frames_n
        end_us = batch.collector_time_us + int(batch.n_frames * 1e6 / batch.sample_rate_hz)
        self._last_data_us[session_id] = max(self._last_data_us.get(session_id, 0), end_us)
        self._last_seen[session_id] = time.monotonic()
        if self.live_strides and result.accepted_frames_n:
            self._feed_live(patient, session_id, batch)

    def _feed_live(self, patient: str, session_id: str, batch: Batch) -> None:
        """Provisional strides; never allowed to disturb ingest (the final analysis is at close)."""
        try:
            live = self._live.get(session_id)
            if live is not None and live.gap_frames(batch) > MAX_LIVE_GAP_S * live.rate_hz:
                live = None  # a long silence: start the provisional analysis afresh instead of padding it
            if live is None:  # also after a restart: provisional strides resume with the next data
                live = self._live[session_id] = _LiveSession(batch.collector_time_us, batch, chunk_s=self.live_chunk_s)
            strides = live.feed(batch)
        except Exception as exc:  # noqa: BLE001
            log.warning("live analysis of %s stopped: %s", session_id, exc)
            self._live.pop(session_id, None)
            return
        if strides is not None and len(strides) and self.on_live_strides is not None:
            self.stats.live_strides_n += len(strides)
            self._outgoing.append((self.on_live_strides, (patient, session_id, live.origin_us, strides)))

    def _on_session(self, msg: SessionMessage) -> None:
        _check_time(msg.time_us, "time_us")
        if msg.event == "start":
            previous = self._open.get(msg.patient)
            if previous is not None and previous != msg.session_id:
                self.close_session(previous, msg.time_us, "superseded")
            created = self.store.open_session(msg.session_id, msg.patient, msg.time_us, dict(msg.devices))
            if not created and self.store.query("SELECT 1 AS x FROM sessions WHERE session_id = ? AND state = 'open'",
                                                (msg.session_id,)).empty:
                return  # a replayed start of a session that is closed already: it stays closed
            self._open[msg.patient] = msg.session_id
            self._last_data_us.setdefault(msg.session_id, msg.time_us)
            self._last_seen[msg.session_id] = time.monotonic()
        else:
            self.close_session(msg.session_id, msg.time_us, msg.reason or "stopped")

    def close_session(self, session_id: str, end_us: int, reason: str) -> None:
        closed = self.store.close_session(session_id, end_us, reason)
        for patient, sid in list(self._open.items()):
            if sid == session_id:
                del self._open[patient]
        self._last_data_us.pop(session_id, None)
        self._last_seen.pop(session_id, None)
        self._live.pop(session_id, None)
        if closed:
            self.stats.sessions_closed_n += 1
        finished = not self.store.query(
            "SELECT 1 AS x FROM session_summaries WHERE session_id = ?", (session_id,)).empty
        # also when a previous attempt closed the session but failed before storing its results
        if (closed or not finished) and (self.analyze_on_close or self.archive is not None):
            if closed or self._session_exists(session_id):
                self.finish_session(session_id)

    def _session_exists(self, session_id: str) -> bool:
        return not self.store.query("SELECT 1 AS x FROM sessions WHERE session_id = ?", (session_id,)).empty

    def _save_state(self) -> tuple:
        stats = dataclasses.replace(self.stats, rejected=Counter(self.stats.rejected))  # cheap: runs per message
        return dict(self._open), dict(self._last_data_us), dict(self._last_seen), stats

    def _restore_state(self, saved: tuple) -> None:
        self._open, self._last_data_us, self._last_seen = dict(saved[0]), dict(saved[1]), dict(saved[2])
        stats = saved[3]
        stats.store_retries_n = self.stats.store_retries_n
        self.stats = stats
        self._outgoing.clear()  # nothing of a rolled-back group is announced
        self._live.clear()  # provisional analysis restarts with the next data

    def flush_outgoing(self) -> None:
        """Publish what the last committed transaction produced (flags, live strides)."""
        pending, self._outgoing = self._outgoing, []
        for send, args in pending:
            try:
                send(*args)
            except Exception:  # noqa: BLE001 - a failed announcement must not stop ingest
                log.exception("could not publish a result")

    def close_idle_sessions(self, now_monotonic: float | None = None) -> None:
        """Close sessions that received nothing for ``inactivity_s``; all or nothing, like a message group."""
        now = time.monotonic() if now_monotonic is None else now_monotonic
        idle = [sid for sid, seen in self._last_seen.items() if now - seen > self.inactivity_s]
        if not idle:
            return
        saved = self._save_state()
        try:
            with self.store.transaction():
                for session_id in idle:
                    self.close_session(session_id, self._last_data_us.get(session_id, 0), "inactivity")
        except StoreUnavailableError:
            self._restore_state(saved)
            raise
        self.flush_outgoing()

    # analytics ------------------------------------------------------------------------------
    def finish_session(self, session_id: str) -> pd.DataFrame | None:
        """Archive the session's raw frames, then run the analytics and store the results.

        Both steps read the de-duplicated raw store and overwrite their previous output, so
        running this twice (e.g. after a crash and redelivery) gives the same result.
        """
        row = self.store.query("SELECT patient, start_us FROM sessions WHERE session_id = ?", (session_id,)).iloc[0]
        patient, start_us = str(row.patient), int(row.start_us)
        batches = list(self.store.session_batches(session_id))
        day = day_of(start_us)
        if self.archive is not None and batches:
            self.archive.write_session(patient, day, session_id, batches)
        if not self.analyze_on_close:
            return None
        try:
            recording = recording_from_batches(batches, origin_us=start_us)
            if recording is None:
                raise _Implausible("the session has no stored frames", reason="no_data")
            strides, summary = run_analytics(recording)
        except InsoleError as exc:  # stored, so a session that cannot be analysed is not retried forever
            log.warning("session %s not analysed: %s", session_id, exc)
            strides, summary = pd.DataFrame(columns=["side", "heel_strike_s"]), {"quality_flags": [exc.reason],
                                                                                 "error": str(exc)}
        summary = dict(summary, session_start_us=start_us)
        self.store.save_session_results(session_id, patient, day, strides, summary)
        update_daily_summary(self.store, patient, day)
        now_us = start_us if self.detection_clock == "data" else time.time_ns() // 1000
        for event in update_flags(self.store, patient, now_us=now_us):
            self.stats.flags_n += 1
            if self.on_flag is not None:
                self._outgoing.append((self.on_flag, (patient, event.to_message(patient, time_us=now_us))))
        return strides

    # MQTT --------------------------------------------------------------------------------------
    def run(self, mqtt: MqttSettings, *, client_id: str = "kinetic-processing", stop: threading.Event | None = None,
            ready: threading.Event | None = None, persistent: bool = True) -> None:
        """Consume from the broker until ``stop`` is set.

        ``persistent`` keeps a broker-side session under ``client_id`` (QoS 1 messages wait
        for the worker while it is down); one-off runs and tests pass False.
        """
        stop = stop or threading.Event()
        inbox: queue.Queue = queue.Queue(maxsize=10_000)
        client = make_client(mqtt, client_id=client_id, clean_session=not persistent)
        client.manual_ack_set(True)
        filters = [f for kind in ("raw/+", "session") for f in topics.partition_filters(kind, self.partitions)]

        subscribed = threading.Event()

        def on_connect(c, _u, _flags, rc, _props):
            if not getattr(rc, "is_failure", False):
                c.subscribe([(f, 1) for f in filters])

        def on_subscribe(_c, _u, _mid, reason_codes, _props):
            failed = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
            if failed:
                log.error("the broker refused subscriptions: %s", failed)
            subscribed.set()

        def on_message(_c, _u, message):
            inbox.put((message.topic, bytes(message.payload), message.mid, message.qos))

        def publish_strides(patient: str, session_id: str, origin_us: int, strides: pd.DataFrame) -> None:
            records = []
            for r in strides.to_dict("records"):
                try:  # times on the collector time base (Unix seconds), as the contract says
                    records.append(StrideRecord(**{k: (v + origin_us / 1e6 if k in _TIME_COLS else v)
                                                   for k, v in r.items() if _finite(v)}))
                except ValueError:
                    continue  # a stride whose core fields are not finite is not published
            if records:
                msg = StridesMessage(session_id=session_id, strides=records)
                client.publish(topics.strides_topic(patient), msg.to_json(), qos=1)

        self.on_live_strides = publish_strides
        self.on_flag = lambda patient, msg: client.publish(topics.flags_topic(patient), msg.to_json(), qos=1)
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        connect(client, mqtt)
        if not subscribed.wait(10):
            log.warning("no SUBACK from the broker within 10 s; continuing")
        if ready is not None:
            ready.set()
        retry: list | None = None
        backoff_s = 0.5
        try:
            while not stop.is_set():
                try:
                    item = retry or inbox.get(timeout=0.5)
                except queue.Empty:
                    try:
                        self.close_idle_sessions()
                    except StoreUnavailableError as exc:
                        log.warning("database unavailable while closing idle sessions: %s", exc)
                    continue
                group = item if retry else [item]
                while not retry and len(group) < self.group_commit_n:  # group commit: one transaction
                    try:
                        group.append(inbox.get_nowait())
                    except queue.Empty:
                        break
                saved = self._save_state()
                try:
                    with self.store.transaction():
                        for topic, payload, _mid, _qos in group:
                            self.handle(topic, payload)
                except StoreUnavailableError as exc:
                    # nothing of the group was committed: forget its effects, keep it unacknowledged,
                    # retry; paho stops reading once the inbox is full
                    self._restore_state(saved)
                    self.stats.store_retries_n += 1
                    log.warning("database unavailable (%s); retrying %d messages in %.1f s", exc, len(group), backoff_s)
                    retry = group
                    stop.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, 10.0)
                    continue
                retry, backoff_s = None, 0.5
                self.flush_outgoing()  # announced only after the commit
                for _topic, _payload, mid, qos in group:  # acknowledged only after the commit
                    if qos > 0:
                        client.ack(mid, qos)
        finally:
            client.disconnect()
            client.loop_stop()


_TIME_COLS = {"heel_strike_s", "toe_off_s", "next_heel_strike_s"}


def _finite(v) -> bool:
    if isinstance(v, (float, np.floating)):
        return bool(np.isfinite(v))
    return v is not None and not isinstance(v, (pd.Timestamp,))


#: a live stream silent for longer than this restarts its provisional analysis (no NaN padding)
MAX_LIVE_GAP_S = 30.0
#: a session longer than this is not put on one grid (memory); it is flagged instead
MAX_SESSION_S = 12 * 3600
#: plausible collector times: 2000-01-01 .. 2100-01-01 (us since the Unix epoch)
TIME_RANGE_US = (946_684_800_000_000, 4_102_444_800_000_000)


def _check_time(time_us: int, name: str) -> None:
    if not TIME_RANGE_US[0] <= time_us < TIME_RANGE_US[1]:
        raise _Implausible(f"{name} {time_us} is not a time between 2000 and 2100")


class _Implausible(InsoleError):
    def __init__(self, message: str, *, reason: str = "implausible_value") -> None:
        super().__init__(message)
        self.reason = reason


class _Mismatch(InsoleError):
    reason = "inconsistent_message"


def recording_from_batches(batches: list[Batch], *, origin_us: int) -> Recording | None:
    """Place stored batches on one uniform grid per foot (missing frames stay NaN).

    Times are seconds since ``origin_us``. The foot's sample clock is fitted
    from the batches' aligned collector times (``t = a + seq / rate``), so device
    clock drift does not pull left and right apart over a long session.
    """
    feet: dict[str, FootRecording] = {}
    for side in ("L", "R"):
        mine = sorted((b for b in batches if b.side == side), key=lambda b: b.first_seq)
        if not mine:
            continue
        head = mine[0]
        lo, hi = head.first_seq, max(b.last_seq for b in mine) + 1
        n = hi - lo
        if n > MAX_SESSION_S * head.sample_rate_hz:
            raise _Implausible(f"the {side} foot's frames span {n} sequence numbers ({n / head.sample_rate_hz / 3600:.0f} h)"
                               f"; sessions longer than {MAX_SESSION_S // 3600} h are not analysed in one piece",
                               reason="session_too_long")
        pressure = np.full((n, head.n_channels), np.nan)
        imu = np.full((n, 6), np.nan) if head.has_imu else None
        for b in mine:
            i = b.first_seq - lo
            pressure[i : i + b.n_frames] = b.pressure
            if imu is not None and b.imu_raw is not None:
                imu[i : i + b.n_frames, :3] = b.acc_g
                imu[i : i + b.n_frames, 3:] = b.gyro_dps
        seq0 = np.array([b.first_seq - lo for b in mine], dtype=np.float64)
        t0 = np.array([(b.collector_time_us - origin_us) / 1e6 for b in mine])
        if len(mine) >= 2 and seq0[-1] > seq0[0]:
            slope, intercept = np.polyfit(seq0, t0, 1)
            rate = 1.0 / slope if slope > 0 else head.sample_rate_hz
        else:
            rate, intercept = head.sample_rate_hz, t0[0]
        if abs(rate / head.sample_rate_hz - 1) > 0.01:  # implausible: keep the nominal rate
            rate, intercept = head.sample_rate_hz, float(np.median(t0 - seq0 / head.sample_rate_hz))
        layout = LAYOUTS_BY_WIRE_ID.get(head.layout_id)
        feet[side] = FootRecording(
            side=side,
            sample_rate_hz=float(rate),
            t0_s=float(intercept),
            pressure=pressure,
            pressure_unit=head.pressure_unit.label,
            layout=layout if layout is not None and layout.n_channels == head.n_channels else None,
            acc_g=None if imu is None else imu[:, :3],
            gyro_dps=None if imu is None else imu[:, 3:],
            seq=np.arange(lo, hi, dtype=np.uint64),
            device_id=head.device_id,
        )
    if not feet:
        return None
    return Recording(feet=feet, source_format="kinetic-stream", meta={"origin_us": origin_us})


def run_analytics(recording: Recording) -> tuple[pd.DataFrame, dict]:
    """Gait analytics on one recording -> (per-stride table, session summary)."""
    from processing.analytics import analyze

    result = analyze(recording)
    return result.strides, dict(result.summary)


#: per-stride columns summarised per day (median over the day's strides), when present
DAILY_METRICS = (
    C.STRIDE_TIME_S, C.STANCE_TIME_S, C.SWING_TIME_S, C.STANCE_PCT, C.DOUBLE_SUPPORT_PCT, C.CADENCE_STEPS_PER_MIN,
    C.STRIDE_LENGTH_M, C.GAIT_SPEED_M_S, C.COP_ML_MEAN_FW, C.LATERAL_LOAD_FRACTION, C.HEEL_LOAD_FRACTION,
    C.MIDFOOT_LOAD_FRACTION, C.FOREFOOT_LOAD_FRACTION, C.PEAK_HEEL_LOAD, C.PEAK_LOAD,
)


def daily_metrics(table: pd.DataFrame) -> dict[str, float | int | None]:
    """One day's metrics from its strides: the median of each of :data:`DAILY_METRICS`, over both
    feet and per side (``{metric}_L`` / ``{metric}_R``: limp and one-sided changes need them),
    and the stride counts. The service's daily summaries and the detection cohorts both use it."""
    metrics: dict[str, float | int | None] = {}
    side = table["side"] if "side" in table else pd.Series(dtype=object)
    for col in DAILY_METRICS:
        if col not in table:
            continue
        values = pd.to_numeric(table[col], errors="coerce")
        metrics[col] = float(values.median()) if values.notna().any() else None
        for s in ("L", "R"):
            side_values = values[side == s].dropna()
            metrics[f"{col}_{s}"] = float(side_values.median()) if len(side_values) else None
    for s in ("L", "R"):
        metrics[f"strides_{s}_n"] = int((side == s).sum())
    return metrics


def update_daily_summary(store: Store, patient: str, day: str) -> None:
    """Recompute one patient-day from its stored strides (idempotent)."""
    import json

    rows = store.query("SELECT session_id, side, metrics_json FROM strides WHERE patient = ? AND day = ?", (patient, day))
    sessions_n = int(store.query(
        "SELECT COUNT(*) AS n FROM session_summaries WHERE patient = ? AND day = ?", (patient, day)).iloc[0]["n"])
    metrics = daily_metrics(pd.DataFrame([json.loads(m) for m in rows["metrics_json"]])) if len(rows) else {}
    store.save_daily_summary(patient, day, sessions_n, len(rows), metrics)


def daily_table(store: Store, patient: str) -> pd.DataFrame:
    """The patient's daily summaries as one row per day (index ``YYYY-MM-DD``): metrics and ``strides_n``."""
    import json

    rows = store.query("SELECT day, strides_n, metrics_json FROM daily_summaries WHERE patient = ? ORDER BY day",
                       (patient,))
    table = pd.DataFrame([json.loads(m) for m in rows["metrics_json"]], index=rows["day"].astype(str))
    table["strides_n"] = rows["strides_n"].to_numpy()
    return table.apply(pd.to_numeric, errors="coerce")


def update_flags(store: Store, patient: str, *, now_us: int) -> list:
    """Run compensation detection over all the patient's days; store baselines and flags.

    Recomputed from the daily summaries each time (idempotent under redelivery and restarts).
    The therapist's reference period, when one is stored (a ``baselines`` row with source
    ``therapist``), replaces the automatic baseline. Returns the flag events that are new
    since the last run; the caller publishes them on the alerts topic.
    """
    import json

    from processing.detection import CompensationDetector, ReferencePeriod

    daily = daily_table(store, patient)
    ref = store.query("SELECT start_day, end_day, set_by FROM baselines WHERE patient = ? AND source = 'therapist' "
                      "ORDER BY updated_us DESC LIMIT 1", (patient,))
    reference = None if ref.empty else ReferencePeriod(ref["start_day"][0], ref["end_day"][0], ref["set_by"][0])
    try:
        det = CompensationDetector().detect(daily, reference=reference)
    except InsoleError as exc:  # e.g. not enough walking days yet
        log.info("no compensation detection for %s yet: %s", patient, exc)
        return []
    old = store.query("SELECT kind, metric, state, day, evidence_json, created_us FROM flags WHERE patient = ?",
                      (patient,))
    created = {(r.kind, r.metric, r.state, str(r.day), json.loads(r.evidence_json).get("direction")): int(r.created_us)
               for r in old.itertuples()}
    new_events = []
    with store.transaction():
        store.execute("DELETE FROM flags WHERE patient = ?", (patient,))
        for event in det.flags_:
            key = (event.kind, event.metric, event.state, str(event.day), event.evidence.get("direction"))
            if key not in created:
                new_events.append(event)
            row = event.to_row(patient, created_us=created.get(key, now_us))
            store.execute(f"INSERT INTO flags ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                          tuple(row.values()))
        if reference is None:
            store.execute("DELETE FROM baselines WHERE patient = ? AND source = 'auto'", (patient,))
        for baseline in det.baselines_.values():
            row = baseline.to_row(patient, updated_us=now_us)
            store.execute("DELETE FROM baselines WHERE patient = ? AND metric = ?", (patient, row["metric"]))
            store.execute(f"INSERT INTO baselines ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                          tuple(row.values()))
    return new_events
