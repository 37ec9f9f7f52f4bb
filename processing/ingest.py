"""Ingest: every MQTT message through :meth:`IngestMixin.handle`, queued groups through the hot path.

Bad input (undecodable payload, unknown topic, invalid JSON) is counted by
reason, logged, written to the ``rejections`` audit table and acknowledged, so it
never blocks the good messages behind it.

Hot path (:meth:`IngestMixin.handle_group`): an in-order batch of a known device in
an open session is checked (topic, header, CRC, sequence range) and its payload stored
with one multi-row insert per group, without a savepoint per message; everything else
(session messages, first or overlapping batches, anything invalid) goes through
:meth:`~IngestMixin.handle`, one savepoint each. If the group insert fails, the
group's fast-path messages are undone and handled one by one, so one bad message still
rejects only itself.
"""

from __future__ import annotations

import logging
import time
import zlib

import numpy as np

from insole_common import topics
from insole_common.codec import CRC_SIZE, Batch, PressureUnit, decode_batch, peek_header
from insole_common.errors import InsoleError
from insole_common.messages import SessionMessage, parse_message
from processing.state import LATE_S, ServiceState
from storage.devices import DeviceOwnerError
from storage.store import StoreUnavailableError

log = logging.getLogger(__name__)

#: at most this many queued messages per transaction (and per paho read burst). Larger groups touch each
#: index page of ``raw_batches`` for more rows: measured over a 60,000-batch drain from 40 insoles, one
#: worker 0.71x -> 0.92x a bare subscriber with 256 -> 512 (docs/benchmarks.md). Keep it at most half the
#: broker's ``max_inflight_messages`` (1000 in deploy/mosquitto), so that the broker can send the next
#: group while the worker commits this one.
GROUP_COMMIT_N = 512

#: the id of a session opened by data without a start message begins with this (``auto-{patient}-{unix s}``)
IMPLICIT_PREFIX = "auto-"
#: plausible collector times: 2000-01-01 .. 2100-01-01 (us since the Unix epoch)
TIME_RANGE_US = (946_684_800_000_000, 4_102_444_800_000_000)
#: one past the highest sequence number the store can keep (its end, first_seq + n_frames, is a signed 64-bit value)
SEQ_END_MAX = 2**63 - 1
#: a device's sequence numbers may run ahead of the collector time since its stored frames by this fraction ...
SEQ_JUMP_RATE_SLACK = 0.05
#: ... plus this many seconds of frames (clock alignment settling, a batch cut early)
SEQ_JUMP_SLACK_S = 10.0


class Implausible(InsoleError):
    def __init__(self, message: str, *, reason: str = "implausible_value") -> None:
        super().__init__(message)
        self.reason = reason


class Mismatch(InsoleError):
    reason = "inconsistent_message"


def check_time(time_us: int, name: str) -> None:
    if not TIME_RANGE_US[0] <= time_us < TIME_RANGE_US[1]:
        raise Implausible(f"{name} {time_us} is not a time between 2000 and 2100")


def check_seq_jump(tail: Batch, batch: Batch) -> None:
    """Refuse ``batch`` when its sequence numbers jump further past the device's stored ``tail`` than the collector
    time between them and the stored sample rate allow (a device counts one frame per sample period; the
    collector continues a restarted device's numbers by the wall-clock time in between, collector/service.py).
    One such batch would otherwise stretch the device's frames over an impossible span (``session_too_long``)."""
    end = tail.first_seq + tail.n_frames
    if batch.first_seq <= end:
        return  # in order, or overlapping (duplicates are dropped by the store)
    end_us = tail.collector_time_us + tail.n_frames * 1e6 / tail.sample_rate_hz
    elapsed_s = max(0.0, (batch.collector_time_us - end_us) / 1e6)
    allowed_n = (elapsed_s * (1 + SEQ_JUMP_RATE_SLACK) + SEQ_JUMP_SLACK_S) * tail.sample_rate_hz
    if batch.first_seq - end > allowed_n:
        raise Implausible(f"device {batch.device_id}: sequence jumps from {end - 1} to {batch.first_seq} in "
                          f"{elapsed_s:.1f} s at {tail.sample_rate_hz:g} Hz (at most {allowed_n:.0f} frames)",
                          reason="sequence_jump")


class _RawTopic:
    """A raw topic's last fully decoded batch: what the hot path compares the next batches with."""

    __slots__ = ("device_id", "duration_us", "live_spec", "n_frames", "patient", "session_id", "side", "size", "stream")

    def __init__(self, patient: str, batch: Batch, payload: bytes, session_id: str) -> None:
        self.patient, self.side, self.device_id = patient, batch.side, batch.device_id
        self.session_id = session_id  # the session it went into: the hot path takes the next ones only for it
        # every header field but first_seq and the clocks, and the device id (insole_common.codec.peek_header)
        self.stream = peek_header(payload).stream
        self.n_frames = batch.n_frames
        self.duration_us = int(batch.n_frames * 1e6 / batch.sample_rate_hz)
        self.size = len(payload)
        # what the live analysis needs to turn this topic's pressure counts into the foot's load
        self.live_spec = _live_spec(batch, self.stream)


def _live_spec(batch: Batch, head: bytes | None) -> tuple:
    """A batch's ``spec`` for :mod:`processing.live` (``head``: its payloads' stream identity, None for loads)."""
    return (batch.sample_rate_hz, batch.n_channels, batch.pressure_unit != PressureUnit.ADC, batch.pressure_scale,
            batch.n_channels * batch.pressure_offset, head)


class IngestMixin(ServiceState):
    """Message handling of :class:`processing.service.ProcessingService` (see the module docstring)."""

    def handle(self, topic: str, payload: bytes, *, now_us: int | None = None) -> None:
        """Process one MQTT message. Never raises for bad input: it is rejected and counted."""
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        self.stats.messages_n += 1
        saved = (*self._save_state(), len(self._outgoing))
        try:
            # its own (nested) transaction: a message that fails undoes exactly its own writes
            with self.store.transaction():
                info = topics.parse_topic(topic)
                if info.kind == "raw":
                    batch = decode_batch(payload)
                    if batch.side != info.sub:
                        raise Mismatch(f"batch says side {batch.side} but arrived on the {info.sub} topic")
                    session_id = self._on_batch(info.patient, batch, payload)
                    if len(self._raw_topics) > 100_000:
                        self._raw_topics.clear()
                    self._raw_topics[topic] = _RawTopic(info.patient, batch, payload, session_id)
                elif info.kind == "session":
                    msg = parse_message(payload)
                    if not isinstance(msg, SessionMessage) or msg.patient != info.patient:
                        raise Mismatch("session topic carries a message that is not this patient's session message")
                    self._on_session(msg)
                elif info.kind in ("status", "strides", "flags", "control"):
                    parse_message(payload)  # validated; the dashboard reads retained status itself
        except StoreUnavailableError:
            raise  # not the message's fault: the caller retries it
        except InsoleError as exc:
            self._undo_message(saved)
            self._reject(topic, exc.reason, str(exc), payload, now_us)
        except Exception as exc:  # noqa: BLE001 - logged (with its traceback, rate-limited), counted, rejected
            self.warn("internal_error", "internal error on a message on %s", topic, exc_info=True)
            self._undo_message(saved)
            self._reject(topic, "internal_error", f"{type(exc).__name__}: {exc}", payload, now_us)
        if not self._in_group and (self._stopping or self._refinish):
            self._settle_sessions()

    def _undo_message(self, saved: tuple) -> None:
        """Forget the in-memory effects of a rejected message (its writes were rolled back)."""
        rejected = self.stats.rejected
        self._restore_maps(saved)
        messages_n = self.stats.messages_n
        self.stats = saved[3]
        self.stats.messages_n, self.stats.rejected = messages_n, rejected
        del self._outgoing[saved[6]:]  # results queued by earlier messages of the group stay
        self._live_clear()
        self._device_end.clear()  # re-read from the store when next needed

    def _reject(self, topic: str, reason: str, message: str, payload: bytes, now_us: int) -> None:
        self.stats.rejected[reason] += 1
        self.warn(reason, "rejected message on %s (%s): %s", topic, reason, message)
        self.store.record_rejection(now_us, topic, reason, message, payload)

    def _session_of(self, patient: str, batch: Batch) -> tuple[str, bool]:
        """The session a batch goes into, and whether that session is closed: the session whose stop said the
        device's data went past the batch (it arrived after the stop: NATS orders per subscription only), else
        the patient's open session, else a new implicit one."""
        late = self.store.stopped_session_holding(patient, batch.device_id, batch.first_seq)
        if late is not None and late.state != "open":
            return late.session_id, True
        session_id = self._open.get(patient)
        if session_id is None:  # data without a start message: open an implicit session
            session_id = f"{IMPLICIT_PREFIX}{patient}-{batch.collector_time_us // 1_000_000}"
            self.store.open_session(session_id, patient, batch.collector_time_us, {batch.side: batch.device_id})
            self._open[patient] = session_id
        return session_id, False

    def _on_batch(self, patient: str, batch: Batch, payload: bytes | None = None) -> str:
        """Store a raw batch (checked); the id of the session it went into."""
        if batch.last_seq >= SEQ_END_MAX:
            raise Implausible(f"sequence numbers up to {batch.last_seq} exceed the store's signed 64-bit range")
        check_time(batch.collector_time_us, "collector_time_us")
        tail = self.store.raw_device_tail(batch.device_id)
        if tail is not None:
            try:
                check_seq_jump(tail, batch)
            except Implausible:
                if self.store.device_owner(batch.device_id) not in (None, patient):
                    raise DeviceOwnerError(f"device {batch.device_id!r} belongs to another patient") from None
                raise
        session_id, closed = self._session_of(patient, batch)
        result = self.store.add_raw_batch(batch, patient, session_id, payload=payload)
        end = self.store.raw_end_seq(batch.device_id)
        if end is not None:
            self._device_end[batch.device_id] = end
        self.stats.batches_n += 1
        self.stats.frames_accepted_n += result.accepted_frames_n
        self.stats.frames_duplicate_n += result.duplicate_frames_n
        end_us = batch.collector_time_us + int(batch.n_frames * 1e6 / batch.sample_rate_hz)
        if time.time_ns() // 1000 - end_us > LATE_S * 1e6:
            self.stats.late_batches_n += 1
        if closed:  # analysed again with it before this transaction commits (processing.sessions)
            if result.accepted_frames_n:
                self._refinish.add(session_id)
            return session_id
        self._last_data_us[session_id] = max(self._last_data_us.get(session_id, 0), end_us)
        self._last_seen[session_id] = time.monotonic()
        if self.live_strides and result.accepted_frames_n:
            load = batch.pressure_raw.sum(axis=1, dtype=np.int64) * batch.pressure_scale
            load += batch.n_channels * batch.pressure_offset
            self._live_submit([(session_id, batch.side, _live_spec(batch, None), batch.first_seq,
                                batch.collector_time_us, load)], {session_id: patient})
        return session_id

    def handle_group(self, messages: list[tuple[str, bytes]]) -> None:
        """Process queued messages in order inside the caller's transaction (see the module docstring)."""
        self._in_group = True
        try:
            for topic, payload in messages:
                if not self._fast_batch(topic, payload):
                    self._flush_fast()  # keeps the order: what went before is stored first
                    self.handle(topic, payload)
            self._flush_fast()
        finally:
            self._in_group = False
        if self._stopping or self._refinish:
            self._settle_sessions()

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
        if session_id is None or session_id != known.session_id:  # (a new session's first batch: handle())
            return False
        stream, first_seq, time_us = peek_header(payload)
        if stream != known.stream:
            return False
        if zlib.crc32(memoryview(payload)[: -CRC_SIZE]) != int.from_bytes(payload[-CRC_SIZE:], "little"):
            return False
        device_id, n = known.device_id, known.n_frames
        end = self._device_end.get(device_id)
        # (a gap or a jump goes through handle(), which checks it against the device's clock)
        if end is None or first_seq != end or first_seq + n > SEQ_END_MAX or not TIME_RANGE_US[0] <= time_us < TIME_RANGE_US[1]:
            return False
        if not self._pending_msgs:
            self._fast_saved = (*self._save_state(), len(self._outgoing))
        self._pending_msgs.append((topic, payload))
        self._device_end[device_id] = first_seq + n
        self._pending_raw.append((device_id, first_seq, n, session_id, known.side, time_us, payload))
        stats = self.stats
        stats.messages_n += 1
        stats.batches_n += 1
        stats.frames_accepted_n += n
        end_us = time_us + known.duration_us
        if time.time() * 1e6 - end_us > LATE_S * 1e6:
            stats.late_batches_n += 1
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
            self._restore_maps(saved)
            self.stats = saved[3]
            del self._outgoing[saved[6]:]
            self._live_clear()
            self._device_end.clear()
            for topic, payload in msgs:
                self.handle(topic, payload)
