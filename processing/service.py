"""The processing service: MQTT ingest -> exactly-once raw store -> sessions -> gait analytics.

Message handling is a plain method (:meth:`ProcessingService.handle`) so that the
logic is the same under the real broker and in tests; :meth:`run` wires it to
paho with QoS 1, a persistent session (``clean_session=False``, fixed client id)
and manual acknowledgement: a message is acknowledged only after what it
carried is committed, so a crash before the commit means redelivery, never loss.

Bad input (undecodable payload, unknown topic, invalid JSON) is counted by
reason, logged, written to the ``rejections`` audit table and acknowledged, so it
never blocks the good messages behind it.

Hot path (:meth:`ProcessingService.handle_group`): an in-order batch of a known device in
an open session is checked (topic, header, CRC, sequence range) and its payload stored
with one multi-row insert per group, without a savepoint per message; everything else
(session messages, first or overlapping batches, anything invalid) goes through
:meth:`~ProcessingService.handle`, one savepoint each. If the group insert fails, the
group's fast-path messages are undone and handled one by one, so one bad message still
rejects only itself.

Live strides: each foot's load goes through :class:`processing.analytics.online.OnlineStrideDetector`
(:mod:`processing.live`), in this process or, under :meth:`run` with ``live_process``, in a helper
process. In-process a stride is stored in ``live_strides`` in the transaction of the batch that
completes it; from the helper, in the transaction of a later group (or right after, when the worker
is idle). Under :meth:`run` with a backlog, strides are written at most every ``LIVE_ANNOUNCE_S``
(each write rewrites an index page of ``live_strides`` per running foot); as soon as the inbox is
empty, at once. Either way a stride is announced on the strides topic after its commit. Closing the
session replaces them with the final analysis. Provisional strides not yet written when the worker
dies are not recovered: the session's final analysis has them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from insole_common import topics
from insole_common.calendar import day_of
from insole_common.codec import CRC_SIZE, HEADER, HEADER_SIZE, Batch, PressureUnit, decode_batch
from insole_common.errors import InsoleError
from insole_common.layouts import LAYOUTS_BY_WIRE_ID
from insole_common.messages import SessionMessage, StridesMessage, parse_message
from insole_common.recording import FootRecording, Recording
from transport.mqtt import MqttSettings, ack_all, connect, make_client
from processing.analytics import analyze
from processing.analytics.online import OnlineStride
from processing.flags import update_flags
from storage.archive import RawArchive
from processing.live import LiveFeet, LiveProcess, LiveResult
from processing.summaries import backfill_weekly_summaries, update_daily_summary, update_weekly_summary
from storage.store import Store, StoreUnavailableError

log = logging.getLogger(__name__)

#: at most this many queued messages per transaction (and per paho read burst). Larger groups touch each
#: index page of ``raw_batches`` for more rows: measured over a 60,000-batch drain from 40 insoles, one
#: worker 0.71x -> 0.92x a bare subscriber with 256 -> 512 (docs/benchmarks.md). Keep it at most half the
#: broker's ``max_inflight_messages`` (1000 in deploy/mosquitto), so that the broker can send the next
#: group while the worker commits this one.
GROUP_COMMIT_N = 512


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


class _RawTopic:
    """A raw topic's last fully decoded batch: what the hot path compares the next batches with."""

    __slots__ = ("patient", "side", "device_id", "device_id_bytes", "id_end", "n_frames", "duration_us", "size",
                 "head", "tail", "live_spec")

    def __init__(self, patient: str, batch: Batch, payload: bytes) -> None:
        h = HEADER.unpack_from(payload)
        self.patient, self.side, self.device_id = patient, batch.side, batch.device_id
        self.id_end = HEADER_SIZE + h[8]
        self.device_id_bytes = payload[HEADER_SIZE : self.id_end]
        self.n_frames = batch.n_frames
        self.duration_us = int(batch.n_frames * 1e6 / batch.sample_rate_hz)
        self.size = len(payload)
        # every header field but first_seq, device_time_us and collector_time_us (HEADER's fields 11..13)
        self.head, self.tail = h[:11], h[14:]
        # what the live analysis needs to turn this topic's pressure counts into the foot's load
        self.live_spec = _live_spec(batch, self.head)


def _live_spec(batch: Batch, head: tuple | None) -> tuple:
    """A batch's ``spec`` for :mod:`processing.live`."""
    return (batch.sample_rate_hz, batch.n_channels, batch.pressure_unit != PressureUnit.ADC, batch.pressure_scale,
            batch.n_channels * batch.pressure_offset, head)


class ProcessingService:
    def __init__(
        self,
        store: Store,
        *,
        inactivity_s: float = 300.0,
        partitions: list[int] | None = None,
        analyze_on_close: bool = True,
        archive: RawArchive | None = None,
        group_commit_n: int = GROUP_COMMIT_N,
        live_strides: bool = True,
        live_process: bool = False,
    ) -> None:
        self.store = store
        self.archive = archive
        #: at most this many queued messages are handled in one transaction and acknowledged together
        self.group_commit_n = group_commit_n
        self.live_strides = live_strides
        self.inactivity_s = inactivity_s
        self.partitions = partitions
        self.analyze_on_close = analyze_on_close
        self.stats = ServiceStats()
        self._open: dict[str, str] = {}  # patient -> open session id
        #: provisional live analysis, in this process or (from run(), ``live_process``) in a helper process
        self._live_feet = LiveFeet()
        self._live_proc: LiveProcess | None = None
        self.live_process = live_process
        #: (session id, side) -> (patient, strides starting at or before this are stored already: a restart)
        self._live_keys: dict[tuple[str, str], tuple[str, float]] = {}
        self._live_announce: dict[tuple[str, str], list] = {}  # committed, not yet announced (flush_outgoing)
        #: live strides are written at most this often (s); 0: in the transaction that produced them. run()
        #: sets LIVE_ANNOUNCE_S and writes at once whenever its inbox is empty
        self.live_write_every_s = 0.0
        self._live_rows: list[tuple] = []  # live_strides rows not yet written
        self._live_held: list[tuple] = []  # their announcements (to _outgoing once written)
        self._live_written_at = 0.0
        self._live_announced_at = 0.0
        #: called with (patient, session_id, [(side, OnlineStride), ...]) for provisional strides; set by run()
        self.on_live_strides = None
        #: hot path: raw topic -> its last fully decoded batch; device -> one past its highest stored seq
        self._raw_topics: dict[str, _RawTopic] = {}
        self._device_end: dict[str, int] = {}
        #: rows of the group's fast-path messages not yet inserted, and those messages (for the fallback)
        self._pending_raw: list[tuple] = []
        self._pending_feed: list[tuple] = []  # live-analysis items (processing.live)
        self._pending_patients: dict[str, str] = {}  # session id -> patient of the pending items
        self._pending_msgs: list[tuple[str, bytes]] = []
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
        backfill_weekly_summaries(store)
        for row in store.query("SELECT session_id, patient, start_us FROM sessions WHERE state = 'open'").itertuples():
            self._open[row.patient] = row.session_id
            b = store.latest_session_batch(row.session_id)
            if b is None:
                self._last_data_us[row.session_id] = int(row.start_us)
            else:
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
                    if len(self._raw_topics) > 100_000:
                        self._raw_topics.clear()
                    self._raw_topics[topic] = _RawTopic(info.patient, batch, payload)
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
        self._live_clear()
        self._device_end.clear()  # re-read from the store when next needed

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
        end = self.store.raw_end_seq(batch.device_id)
        if end is not None:
            self._device_end[batch.device_id] = end
        self.stats.batches_n += 1
        self.stats.frames_accepted_n += result.accepted_frames_n
        self.stats.frames_duplicate_n += result.duplicate_frames_n
        end_us = batch.collector_time_us + int(batch.n_frames * 1e6 / batch.sample_rate_hz)
        self._last_data_us[session_id] = max(self._last_data_us.get(session_id, 0), end_us)
        self._last_seen[session_id] = time.monotonic()
        if self.live_strides and result.accepted_frames_n:
            load = batch.pressure_raw.sum(axis=1, dtype=np.int64) * batch.pressure_scale
            load += batch.n_channels * batch.pressure_offset
            self._live_submit([(session_id, batch.side, _live_spec(batch, None), batch.first_seq,
                                batch.collector_time_us, load)], {session_id: patient})

    # hot path ----------------------------------------------------------------------------------
    def handle_group(self, messages: list[tuple[str, bytes]]) -> None:
        """Process queued messages in order inside the caller's transaction (see the module docstring)."""
        for topic, payload in messages:
            if not self._fast_batch(topic, payload):
                self._flush_fast()  # keeps the order: what went before is stored first
                self.handle(topic, payload)
        self._flush_fast()

    def _fast_batch(self, topic: str, payload: bytes) -> bool:
        """Take an in-order batch of a known device of an open session without a savepoint; False: not for here.

        The batch is checked against the last batch fully decoded on its topic: when every header field
        but the sequence number and the clocks, the device id and the length are the same, the checks of
        :func:`decode_batch` on them have the same outcome, so what is left is the CRC and the ranges.
        """
        known = self._raw_topics.get(topic)
        if known is None or len(payload) != known.size:
            return False
        session_id = self._open.get(known.patient)
        if session_id is None:
            return False
        h = HEADER.unpack_from(payload)
        if h[:11] != known.head or h[14:] != known.tail or payload[HEADER_SIZE : known.id_end] != known.device_id_bytes:
            return False
        if zlib.crc32(memoryview(payload)[: -CRC_SIZE]) != int.from_bytes(payload[-CRC_SIZE:], "little"):
            return False
        first_seq, time_us = h[11], h[13]
        device_id, n = known.device_id, known.n_frames
        end = self._device_end.get(device_id)
        if end is None or first_seq < end or first_seq + n > 2**63 or not TIME_RANGE_US[0] <= time_us < TIME_RANGE_US[1]:
            return False
        if not self._pending_msgs:
            self._fast_saved = self._save_state() + (len(self._outgoing),)
        self._pending_msgs.append((topic, payload))
        self._device_end[device_id] = first_seq + n
        self._pending_raw.append((device_id, first_seq, n, session_id, known.side, time_us, payload))
        stats = self.stats
        stats.messages_n += 1
        stats.batches_n += 1
        stats.frames_accepted_n += n
        end_us = time_us + known.duration_us
        if end_us > self._last_data_us.get(session_id, 0):
            self._last_data_us[session_id] = end_us
        self._last_seen[session_id] = time.monotonic()
        if self.live_strides:
            self._pending_feed.append((session_id, known.side, known.live_spec, first_seq, time_us, payload))
            self._pending_patients[session_id] = known.patient
        return True

    def _flush_fast(self) -> None:
        """Insert the pending fast-path rows (one savepoint); on an error handle those messages one by one."""
        if not self._pending_msgs:
            return
        raw, feed, msgs, patients = self._pending_raw, self._pending_feed, self._pending_msgs, self._pending_patients
        self._pending_raw, self._pending_feed, self._pending_msgs, self._pending_patients = [], [], [], {}
        try:
            with self.store.transaction():
                self.store.add_raw_payloads(raw)
                if feed:
                    self._live_submit(feed, patients)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a frame stored behind our back: isolate per message
            log.warning("group insert of %d batches failed (%s); handling them one by one", len(msgs), exc)
            saved = self._fast_saved  # the state before the first of them (only fast-path messages since)
            self._open, self._last_data_us, self._last_seen = dict(saved[0]), dict(saved[1]), dict(saved[2])
            self.stats = saved[3]
            del self._outgoing[saved[4]:]
            self._live_clear()
            self._device_end.clear()
            for topic, payload in msgs:
                self.handle(topic, payload)

    # live strides ------------------------------------------------------------------------------
    def _live_submit(self, items: list[tuple], patients: dict[str, str]) -> None:
        """Hand live-analysis items (see :mod:`processing.live`) to the analysis. In this process the strides
        they complete are stored at once; from the helper process with a later group (or when idle)."""
        keys = self._live_keys
        for key in {(it[0], it[1]) for it in items}:
            if key not in keys:  # a new foot, or the first data after a restart: skip what is stored already
                stored = self.store.query("SELECT MAX(heel_strike_s) AS hs FROM live_strides WHERE session_id = ? "
                                          "AND side = ?", key).iloc[0]["hs"]
                keys[key] = (patients[key[0]], -math.inf if stored is None or pd.isna(stored) else float(stored) + 0.2)
        proc = self._live_proc
        if proc is not None:
            proc.submit(items)
            results = proc.collect()
            if not proc.failed:
                self._store_live(results)
                return
            # the helper died (LiveProcess logged it): the feet start afresh here, with these items
            self._live_proc = None
            self._live_feet.clear()
        self._store_live(self._live_feet.feed(items))

    def _store_live(self, results: list[LiveResult]) -> None:
        """Store provisional strides (inside the caller's transaction) and queue their announcement."""
        if not results:
            return
        keys = self._live_keys
        by_key: dict[tuple[str, str], list[OnlineStride]] = {}
        for session_id, side, st in results:
            known = keys.get((session_id, side))
            if known is not None and st.heel_strike_s > known[1]:  # (unknown: its session has closed meanwhile)
                by_key.setdefault((session_id, side), []).append(st)
        now_us = time.time_ns() // 1000
        rows = self._live_rows
        for (session_id, side), strides in by_key.items():
            patient = keys[(session_id, side)][0]
            rows += [(session_id, side, st.heel_strike_s, patient, st.toe_off_s, st.next_heel_strike_s,
                      st.stride_time_s, st.stance_time_s, st.swing_time_s, now_us) for st in strides]
            if self.on_live_strides is not None:
                self._live_held.append((self.on_live_strides, (patient, session_id, [(side, st) for st in strides])))
        self._write_live(force=False)

    def _write_live(self, *, force: bool) -> None:
        """Write the live strides not yet written (inside the caller's transaction) when ``live_write_every_s``
        has passed since the last write, or with ``force``; their announcements follow the commit."""
        if not self._live_rows:
            return
        now = time.monotonic()
        if not force and now - self._live_written_at < self.live_write_every_s:
            return
        self.store.add_live_strides(self._live_rows)
        self.stats.live_strides_n += len(self._live_rows)
        self._outgoing += self._live_held
        self._live_rows, self._live_held, self._live_written_at = [], [], now

    def collect_live(self, timeout_s: float = 0.0) -> None:
        """Store the strides the helper process has finished (waiting up to ``timeout_s`` for all of them) in a
        transaction of their own, then announce them; nothing to do when the analysis runs in this process."""
        proc = self._live_proc
        if proc is None or not proc.outstanding_n:
            return
        results = proc.collect(timeout_s)
        if results or self._live_rows:
            with self.store.transaction():
                self._store_live(results)
                self._write_live(force=True)
            self.flush_outgoing()

    def _write_live_now(self) -> None:
        """Write and announce the live strides held back under load (their own transaction)."""
        try:
            if self._live_rows:
                with self.store.transaction():
                    self._write_live(force=True)
        except StoreUnavailableError as exc:  # provisional strides: dropped, not retried
            log.warning("database unavailable while storing live strides: %s", exc)
            self._live_rows, self._live_held = [], []
        self.flush_outgoing()

    @property
    def live_outstanding_n(self) -> int:
        """Groups of batches handed to the helper process whose strides have not come back yet."""
        return 0 if self._live_proc is None else self._live_proc.outstanding_n

    def _live_forget(self, session_id: str) -> None:
        self._live_feet.forget(session_id)
        if self._live_proc is not None:
            self._live_proc.forget(session_id)
        for side in ("L", "R"):
            self._live_keys.pop((session_id, side), None)
        if self._live_rows:  # not written yet: they would outlive the session's final analysis
            self._live_rows = [r for r in self._live_rows if r[0] != session_id]
            self._live_held = [h for h in self._live_held if h[1][1] != session_id]

    def _live_clear(self) -> None:
        self._live_rows, self._live_held = [], []
        self._live_feet.clear()
        if self._live_proc is not None:
            self._live_proc.clear()
        self._live_keys.clear()

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
        self._live_forget(session_id)
        # provisional strides are for running sessions; the final analysis replaces them
        self.store.execute("DELETE FROM live_strides WHERE session_id = ?", (session_id,))
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
        self._live_clear()  # provisional analysis restarts with the next data
        self._device_end.clear()
        self._pending_raw, self._pending_feed, self._pending_msgs, self._pending_patients = [], [], [], {}

    def flush_outgoing(self, *, all_live: bool = True) -> None:
        """Publish what the last committed transaction produced (flags, live strides).

        Live strides go out as one message per session; with ``all_live`` False (the ingest loop under
        load) they are held back until ``LIVE_ANNOUNCE_S`` has passed since the last ones went out, so a
        busy worker sends a few messages per second per session rather than one per message group."""
        pending, self._outgoing = self._outgoing, []
        live = self._live_announce  # (patient, session id) -> strides committed but not yet announced
        for send, args in pending:
            if send is self.on_live_strides:
                live.setdefault(args[:2], []).extend(args[2])
        pending = [item for item in pending if item[0] is not self.on_live_strides]
        now = time.monotonic()
        if live and (all_live or now - self._live_announced_at >= LIVE_ANNOUNCE_S):
            pending += [(self.on_live_strides, (*key, strides)) for key, strides in live.items()]
            self._live_announce, self._live_announced_at = {}, now
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
        update_weekly_summary(self.store, patient, day)
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
        # paho's thread appends, this one takes groups; a deque and an event cost less per message than a Queue
        inbox: deque = deque()
        arrived = threading.Event()
        client = make_client(mqtt, client_id=client_id, clean_session=not persistent, read_burst_n=self.group_commit_n)
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
            inbox.append((message.topic, message.payload, message.mid, message.qos))
            if not arrived.is_set():
                arrived.set()
            while len(inbox) > INBOX_MAX_N and not stop.is_set():  # back-pressure: paho stops reading
                time.sleep(0.005)

        def publish_strides(patient: str, session_id: str, strides: list[tuple[str, OnlineStride]]) -> None:
            # times on the collector time base (Unix seconds), as the contract says
            # (validated from plain dicts in one call: cheaper than a StrideRecord per stride)
            msg = StridesMessage.model_validate({"session_id": session_id, "strides": [
                dict(zip(OnlineStride._fields, st), side=side) for side, st in strides]})
            client.publish(topics.strides_topic(patient), msg.to_json(), qos=1)

        self.on_live_strides = publish_strides
        self.on_flag = lambda patient, msg: client.publish(topics.flags_topic(patient), msg.to_json(), qos=1)
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        connect(client, mqtt)
        if not subscribed.wait(10):
            log.warning("no SUBACK from the broker within 10 s; continuing")
        self.live_write_every_s = LIVE_ANNOUNCE_S
        if self.live_strides and self.live_process and self._live_proc is None:
            self._live_clear()
            self._live_proc = LiveProcess()
        if ready is not None:
            ready.set()
        retry: list | None = None
        backoff_s = 0.5
        next_idle_check = time.monotonic() + 1.0
        try:
            while not stop.is_set():
                if retry is None:
                    if not inbox:  # (a shorter nap while the live analysis still owes replies)
                        arrived.wait(LIVE_POLL_S if self.live_outstanding_n else 0.5)
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
                if not group:
                    if self.live_outstanding_n:  # idle: replies that came after the last wait for them
                        try:
                            self.collect_live()
                        except StoreUnavailableError as exc:  # provisional strides: dropped, not retried
                            log.warning("database unavailable while storing live strides: %s", exc)
                    if self._live_rows or self._live_announce:  # idle: what was held back under load goes out now
                        self._write_live_now()
                    continue
                saved = self._save_state()
                try:
                    with self.store.transaction():  # group commit: one transaction
                        self.handle_group([(topic, payload) for topic, payload, _mid, _qos in group])
                        self._write_live(force=not inbox)
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
                self.flush_outgoing(all_live=not inbox)  # announced only after the commit
                # acknowledged only after the commit
                ack_all(client, [mid for _t, _p, mid, qos in group if qos == 1])
                for _t, _p, mid, qos in group:
                    if qos == 2:
                        client.ack(mid, qos)
                if not inbox and self.live_outstanding_n:  # idle: store what the live analysis has finished
                    try:
                        self.collect_live(LIVE_WAIT_S)
                    except StoreUnavailableError as exc:  # provisional strides: dropped, not retried
                        log.warning("database unavailable while storing live strides: %s", exc)
        finally:
            self._write_live_now()  # live strides held back under load
            client.disconnect()
            client.loop_stop()
            if self._live_proc is not None:
                self._live_proc.close()
                self._live_proc = None


#: messages waiting for the worker beyond this make paho stop reading (the broker then holds them)
INBOX_MAX_N = 10_000
#: under load, live strides are announced at most this often (s); when the worker is idle, at once
LIVE_ANNOUNCE_S = 0.2
#: while the live-analysis helper still owes replies, an idle worker looks for them this often (s)
LIVE_POLL_S = 0.05
#: when the inbox is empty, wait this long for the helper process's live strides before going on
LIVE_WAIT_S = 0.25
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
    result = analyze(recording)
    return result.strides, dict(result.summary)
