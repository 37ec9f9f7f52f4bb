"""The collector: insole sources -> clock alignment -> batches (:mod:`collector.batching`) -> durable outbox -> broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from collector.batching import SideState, cut_batches, make_batch, same_format
from collector.metrics import collector_metrics
from collector.publisher import OutboxPublisher
from collector.recovery import batches_from_journal, continuation_record, full_record
from collector.sources.base import DeviceFrames, InsoleSource
from insole_common import topics
from insole_common.codec import Side, decode_batch, encode_batch
from insole_common.messages import CollectorStatus, InsoleStatus, SessionMessage
from storage.health import Metric, MetricsServer, WarningLimiter
from storage.spool import OutboxFullError, Spool
from transport.mqtt import MqttSettings, make_client

if TYPE_CHECKING:
    from paho.mqtt.client import CallbackOnConnect_v2

log = logging.getLogger(__name__)
try:
    #: what the collector reports as its software in its status messages (pyproject.toml is the version's one source)
    SOFTWARE = f"kinetic-chain-collector/{version('kinetic-chain')}"
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    SOFTWARE = "kinetic-chain-collector/source"


@dataclass
class CollectorConfig:
    patient: str
    outbox_path: Path
    outbox_budget_bytes: int = 512 * 1024 * 1024
    #: frames per published batch; batch boundaries sit at multiples of this in sequence space
    frames_per_batch: int = 50
    status_interval_s: float = 5.0
    #: how long a clean shutdown waits for the outbox to drain before leaving it for next time
    drain_timeout_s: float = 10.0
    #: every notification is appended to the journal at once (a SIGKILL loses at most the one being handled);
    #: this often the messages not yet acknowledged go to the SQLite outbox and the journal starts afresh
    checkpoint_interval_s: float = 5.0
    #: while the disk is full, messages not on disk may take this much memory; past it new ones are dropped
    memory_budget_bytes: int = 64 * 1024 * 1024
    #: serve the counters in the Prometheus text format on this port (None: off); see storage.health
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"


def new_session_id() -> str:
    return time.strftime("s%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class Collector:
    """Runs a patient's insole sources and forwards everything through the outbox."""

    def __init__(
        self,
        config: CollectorConfig,
        sources: list[InsoleSource],
        mqtt: MqttSettings,
        *,
        client_id: str | None = None,
        clock_us: Callable[[], int] | None = None,
    ) -> None:
        topics.check_patient(config.patient)
        #: the collector's wall clock (Unix epoch, us); injectable for replays and simulations
        self.clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self.config = config
        self.sources = sources
        self.mqtt = mqtt
        self.outbox = Spool(config.outbox_path, budget_bytes=config.outbox_budget_bytes,
                            memory_budget_bytes=config.memory_budget_bytes)
        # the account's name when there is one: the shipped secure broker binds client ids to accounts
        self.client_id = client_id or mqtt.username or f"collector-{config.patient}"
        will = (topics.collector_status_topic(config.patient), CollectorStatus(online=False).to_json(), 1, True)
        self.client = make_client(mqtt, client_id=self.client_id, clean_session=True, will=will)
        self.publisher = OutboxPublisher(self.outbox, self.client)
        self._sides = {s.side: SideState() for s in sources}
        self._journal_heads: dict[str, DeviceFrames] = {}  # side -> the notification its journal records refer to
        self._checkpoint_at = time.monotonic()
        #: batches (and session messages) not kept because the outbox was full or the disk full (drop policy)
        self.lost_outbox_full_n = 0
        self.dropped_frames_n = 0
        self.warnings = WarningLimiter(log)
        self.session_id: str | None = None
        self._window: dict[str, tuple[float, float | None]] = {}  # side -> (loss fraction, rate Hz) last window
        self._window_counts: dict[str, tuple[int, int, float]] = {}
        #: partial batches a previous run had decoded but not finished (crash / SIGKILL), now in the outbox
        self.recovered_n = self.outbox.recover_staged() + self._recover_journal()
        if self.recovered_n:
            log.warning("recovered %d partial batches decoded before the collector was stopped abruptly", self.recovered_n)
        for s in sources:
            s.on_status_change = (lambda src=s: self._publish_insole_status(src))
        # OutboxPublisher's callback; make_client builds a CallbackAPIVersion.VERSION2 client
        on_connect = cast("CallbackOnConnect_v2", self.client.on_connect)

        def _on_connect(client, userdata, flags, rc, props):
            on_connect(client, userdata, flags, rc, props)
            if not getattr(rc, "is_failure", False):
                self._publish_collector_status(online=True)

        self.client.on_connect = _on_connect

    # status ----------------------------------------------------------------------------
    def _publish_collector_status(self, *, online: bool) -> None:
        msg = CollectorStatus(
            online=online,
            time_us=self.clock_us(),
            software=SOFTWARE,
            outbox_batches_n=len(self.outbox),
            outbox_fill_fraction=round(self.outbox.fill_fraction, 4),
            storage_full=self.outbox.storage_full,
            dropped_frames_n=self.dropped_frames_n,
        )
        self.client.publish(topics.collector_status_topic(self.config.patient), msg.to_json(), qos=1, retain=True)

    def _publish_insole_status(self, source: InsoleSource) -> None:
        st = source.status
        state = self._sides[source.side]
        msg = InsoleStatus(
            side=source.side,
            device_id=source.device_id,
            connected=st.connected,
            time_us=self.clock_us(),
            battery_pct=st.battery_pct,
            loss_fraction=round(self._window.get(source.side, (st.loss_fraction, None))[0], 6),
            sample_rate_hz=None if state.frames_n == 0 else getattr(source, "sample_rate_hz", None),
        )
        self.client.publish(topics.insole_status_topic(self.config.patient, source.side), msg.to_json(), qos=1, retain=True)

    def status_line(self) -> str:
        """The live one-line status, e.g. ``L: connected 100 Hz loss 0.1% | R: ... | outbox 3``."""
        parts = []
        for s in self.sources:
            st = s.status
            loss, rate = self._window.get(s.side, (st.loss_fraction, None))
            rate_txt = "" if rate is None else f" {rate:.0f} Hz"
            parts.append(
                f"{s.side}: {'connected' if st.connected else 'NOT connected'}{rate_txt}"
                f" loss {100 * loss:.1f}% bad {st.bad_packets_n}"
            )
        broker = "broker ok" if self.client.is_connected() else "broker unreachable"
        disk = [f"DISK FULL (dropped {self.dropped_frames_n} frames)"] if self.outbox.storage_full else []
        return " | ".join([*parts, f"outbox {len(self.outbox)} ({100 * self.outbox.fill_fraction:.0f}%)", broker, *disk])

    # data path ---------------------------------------------------------------------------
    def _enqueue(self, topic: str, payload: bytes) -> bool:
        """A session message: kept, and on disk at once (a checkpoint)."""
        try:
            self.outbox.put(topic, payload)
        except OutboxFullError as exc:
            self.lost_outbox_full_n += 1
            self.warnings.warn(exc.reason, "%s", exc)
            return False
        self.checkpoint()
        self.publisher.notify()
        return True

    def _seq_offset(self, frames: DeviceFrames) -> int:
        """Offset that keeps ``(device_id, seq)`` unique across collector runs.

        A device's counter restarts with each connection run (16-bit counters are unwrapped per
        run; a reboot resets them), but the processing service keys frames by device and sequence
        number forever. The outbox remembers each device's highest number; a run whose first
        frame does not lie beyond it continues after it, leaving a gap the size of the wall-clock
        time since then (the exact count of frames missed between runs is unknowable).
        """
        mark = self.outbox.seq_mark(frames.device_id)
        if mark is None or frames.first_seq > mark[0]:
            return 0
        last_seq, last_us = mark
        missed = max(0, int(round((self.clock_us() - last_us) / 1e6 * frames.sample_rate_hz)))
        return last_seq + 1 + missed - frames.first_seq

    def handle_frames(self, frames: DeviceFrames) -> None:
        """Align one notification's frames and enqueue every batch they complete."""
        state = self._sides[frames.side]
        if state.seq_offset is None:
            state.seq_offset = self._seq_offset(frames)
            if state.seq_offset:
                log.info("%s insole %s: sequence numbers continue after the previous run (offset %d)",
                         frames.side, frames.device_id, state.seq_offset)
        if state.seq_offset:
            frames = replace(frames, first_seq=frames.first_seq + state.seq_offset)
        period_us = 1e6 / frames.sample_rate_hz
        last_dev_us = frames.device_time_us + int(round((frames.n_frames - 1) * period_us))
        state.aligner.observe(last_dev_us, frames.arrival_time_us)
        self.outbox.journal_append(self._journal_record(frames))
        if state.pending:
            prev = state.pending[-1]
            contiguous = prev.first_seq + prev.n_frames == frames.first_seq and same_format(prev, frames)
            rows = [] if contiguous else self._flush(frames.side)
        else:
            rows = []
        state.pending.append(frames)
        state.frames_n += frames.n_frames
        fpb = self.config.frames_per_batch
        end_seq = frames.first_seq + frames.n_frames
        if (end_seq // fpb) * fpb > state.pending[0].first_seq:  # a batch boundary was reached: cut
            rows += self._flush(frames.side, only_complete=True)
        self._commit(frames.side, rows)

    def _commit(self, side: Side, rows: list[tuple[str, bytes]], *, force: bool = False) -> None:
        """Keep completed batches (published from memory; on disk at the next checkpoint, their frames in the
        journal until then)."""
        for topic, payload in rows:
            try:
                self.outbox.put(topic, payload)
            except OutboxFullError as exc:
                self.lost_outbox_full_n += 1
                self.dropped_frames_n += decode_batch(payload).n_frames
                self.warnings.warn(exc.reason, "%s", exc)
        if rows:
            self.publisher.notify()
        if force or time.monotonic() - self._checkpoint_at >= self.config.checkpoint_interval_s:
            self.checkpoint()

    def checkpoint(self) -> bool:
        """Messages not yet acknowledged to the SQLite outbox, the journal started afresh with the frames not yet in
        a whole batch (:meth:`storage.spool.Spool.checkpoint`); False when the disk refused (retried next time)."""
        self._checkpoint_at = time.monotonic()
        bodies, marks = self._pending_records(), []
        for state in self._sides.values():
            if state.pending:
                last = state.pending[-1]
                marks.append((last.device_id, last.first_seq + last.n_frames - 1, self.clock_us()))
            elif state.last_seq is not None and state.device_id is not None:
                marks.append((state.device_id, state.last_seq, self.clock_us()))
        return self.outbox.checkpoint(bodies, marks)

    def _journal_record(self, frames: DeviceFrames) -> bytes:
        """The journal record of one notification (:mod:`collector.recovery`): whole the first time after a
        checkpoint or a change of device or format, else only its counts."""
        head = self._journal_heads.get(frames.side)
        if head is not None and same_format(head, frames):
            return continuation_record(frames)
        self._journal_heads[frames.side] = frames
        state = self._sides[frames.side]
        return full_record(make_batch(state, frames, frames.first_seq, frames.device_time_us, frames.pressure_raw,
                                      frames.imu_raw))

    def _recover_journal(self) -> int:
        """Batches of the frames a previous run had journaled after its last checkpoint (it was killed): into the
        outbox and on disk before anything new. Some may have been delivered already; the processing service
        keeps each frame once."""
        batches = batches_from_journal(self.outbox.journal_records(), self.config.frames_per_batch)
        marks: dict[str, tuple[str, int, int]] = {}
        for b in batches:
            self.outbox.put(topics.raw_topic(self.config.patient, b.side), encode_batch(b))
            if b.last_seq > marks.get(b.device_id, ("", -1, 0))[1]:
                marks[b.device_id] = (b.device_id, b.last_seq, b.collector_time_us)
        if batches or self.outbox.journal_records():
            self.outbox.checkpoint([], list(marks.values()))
        return len(batches)

    def _flush(self, side: Side, *, only_complete: bool = False) -> list[tuple[str, bytes]]:
        """Cut the side's pending frames into batches (:func:`collector.batching.cut_batches`), encoded."""
        topic = topics.raw_topic(self.config.patient, side)
        return [(topic, encode_batch(b))
                for b in cut_batches(self._sides[side], self.config.frames_per_batch, only_complete=only_complete)]

    def start_session(self, session_id: str | None = None) -> str:
        self.session_id = session_id or new_session_id()
        msg = SessionMessage(
            event="start", session_id=self.session_id, patient=self.config.patient, time_us=self.clock_us(),
            devices={s.side: s.device_id for s in self.sources},
        )
        self._enqueue(topics.session_topic(self.config.patient), msg.to_json())
        return self.session_id

    def stop_session(self, reason: str = "stopped") -> None:
        for side in self._sides:
            self._commit(side, self._flush(side), force=True)
        if self.session_id is None:
            return
        msg = SessionMessage(
            event="stop", session_id=self.session_id, patient=self.config.patient, time_us=self.clock_us(),
            devices={s.side: s.device_id for s in self.sources}, reason=reason,
            ends={st.device_id: st.last_seq + 1 for st in self._sides.values()
                  if st.device_id is not None and st.last_seq is not None},
        )
        self._enqueue(topics.session_topic(self.config.patient), msg.to_json())
        self.session_id = None

    # lifecycle ------------------------------------------------------------------------------
    def connect(self) -> None:
        """Start talking to the broker in the background; works (and queues) while it is down."""
        self.client.connect_async(self.mqtt.host, self.mqtt.port, keepalive=self.mqtt.keepalive_s)
        self.client.loop_start()
        self.publisher.start()

    async def _pump(self, source: InsoleSource) -> None:
        async for frames in source.frames():
            self.handle_frames(frames)

    def _update_window(self) -> None:
        """Loss fraction and measured rate of each insole since the previous call."""
        now = time.monotonic()
        for s in self.sources:
            st = s.status
            prev = self._window_counts.get(s.side)
            self._window_counts[s.side] = (st.frames_received_n, st.frames_missing_n, now)
            if prev is None:
                continue
            got, missed, dt = st.frames_received_n - prev[0], st.frames_missing_n - prev[1], now - prev[2]
            loss = missed / (got + missed) if got + missed else 0.0
            rate = got / dt if dt > 0 else None
            st.rate_hz = rate
            self._window[s.side] = (loss, rate)

    async def _status_loop(self, on_status) -> None:
        self._update_window()
        while True:
            await asyncio.sleep(self.config.status_interval_s)
            self._update_window()
            if time.monotonic() - self._checkpoint_at >= self.config.checkpoint_interval_s:
                self.checkpoint()  # also while no insole sends (and to retry a full disk)
            for s in self.sources:
                self._publish_insole_status(s)
            self._publish_collector_status(online=True)
            if on_status is not None:
                on_status(self.status_line())

    async def run(self, *, session_id: str | None = None, stop: asyncio.Event | None = None, on_status=None) -> None:
        """Record one session until every source ends or ``stop`` is set, then drain and shut down."""
        metrics = None
        if self.config.metrics_port is not None:
            metrics = MetricsServer(self.metrics, port=self.config.metrics_port, host=self.config.metrics_host)
        self.connect()
        self.start_session(session_id)
        pumps = [asyncio.create_task(self._pump(s)) for s in self.sources]
        status = asyncio.create_task(self._status_loop(on_status))
        waiters: list[asyncio.Task[Any]] = list(pumps)
        stopper = None
        if stop is not None:
            stopper = asyncio.create_task(stop.wait())
            waiters.append(stopper)
        try:
            pending = set(waiters)
            while pending - {stopper}:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done & set(pumps):
                    if task.exception() is not None:
                        log.error("source ended with an error: %s", task.exception())
                if stopper in done:
                    break
        finally:
            for t in pumps + [status] + ([stopper] if stopper else []):
                t.cancel()
            for s in self.sources:
                await s.aclose()
                self._publish_insole_status(s)
            self.stop_session()
            await asyncio.to_thread(self.shutdown)
            if metrics is not None:
                metrics.close()

    def shutdown(self) -> None:
        """Wait (bounded) for the outbox to drain, say goodbye, disconnect."""
        drained = self.publisher.wait_until_empty(self.config.drain_timeout_s)
        if not drained:
            log.warning("%d messages stay in the outbox %s and will be sent next time", len(self.outbox), self.outbox.path)
        if self.client.is_connected():
            info = self.client.publish(
                topics.collector_status_topic(self.config.patient),
                CollectorStatus(online=False, time_us=self.clock_us()).to_json(), qos=1, retain=True,
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.publisher.stop()
        self.client.disconnect()
        self.client.loop_stop()
        self.outbox.close(journal_bodies=self._pending_records())

    def _pending_records(self) -> list[bytes]:
        self._journal_heads.clear()
        return [self._journal_record(f) for state in self._sides.values() for f in state.pending]

    def metrics(self) -> list[Metric]:
        """The collector's counters for its health endpoint (``kinetic collect --metrics-port``)."""
        return collector_metrics(self)
