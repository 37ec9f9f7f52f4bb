"""Sessions of the processing service: opened and closed by session messages (or by inactivity), then
finished: the raw frames archived, the gait analytics run, the results, daily and weekly summaries and
compensation flags stored. The session's day is its start's day in the patient's time zone
(:mod:`insole_common.calendar`, :func:`storage.patients.patient_time_zone`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from insole_common.calendar import day_of
from insole_common.codec import Batch, Side
from insole_common.errors import InsoleError
from insole_common.layouts import LAYOUTS_BY_WIRE_ID
from insole_common.messages import SessionMessage
from insole_common.recording import FootRecording, Recording
from processing.analytics import analyze
from processing.flags import update_flags
from processing.ingest import IMPLICIT_PREFIX, Implausible, check_time
from processing.state import ServiceState
from processing.summaries import update_daily_summary, update_weekly_summary
from storage.store import StoreUnavailableError

log = logging.getLogger(__name__)

#: a session longer than this is not put on one grid (memory); it is flagged instead
MAX_SESSION_S = 12 * 3600
#: a stopped session whose data has not reached the stop's ``ends`` is closed with what it has after this long
#: (at most ``inactivity_s``); batches arriving later are still added to it and it is analysed again
STOP_GRACE_S = 30.0
#: a start message adopts an implicit session whose data began at most this long before the start's time
#: (the collector stamps both with its own clock; the slack covers a batch stamped a little early)
ADOPT_SLACK_US = 1_000_000
_NO_STRIDES = pd.DataFrame(columns=["side", "heel_strike_s"])


class SessionsMixin(ServiceState):
    """Session handling of :class:`processing.service.ProcessingService` (see the module docstring)."""

    def _on_session(self, msg: SessionMessage) -> None:
        check_time(msg.time_us, "time_us")
        if msg.event == "start":
            previous = self._open.get(msg.patient)
            if previous is not None and previous != msg.session_id:
                if self._adopt(previous, msg):
                    return
                self.close_session(previous, msg.time_us, "superseded")
            created = self.store.open_session(msg.session_id, msg.patient, msg.time_us,
                                              {str(side): dev for side, dev in msg.devices.items()})
            if not created:
                stored = self.store.session(msg.session_id)
                if stored is None or stored.state != "open":
                    return  # a replayed start of a session that is closed already: it stays closed
            self._open[msg.patient] = msg.session_id
            self._last_data_us.setdefault(msg.session_id, msg.time_us)
            self._last_seen[msg.session_id] = time.monotonic()
        else:
            self._on_stop(msg)

    def _adopt(self, previous: str, msg: SessionMessage) -> bool:
        """A start that arrives after its session's first batches (brokers that order per subscription only, e.g.
        NATS, deliver the session topic and the raw topics independently) finds them in an implicit session
        that began no earlier than the start and holds only the start's devices: that session becomes the
        announced one, as if the start had come first. True when it did."""
        stored = self.store.session(previous)
        if stored is None or stored.state != "open" or not previous.startswith(IMPLICIT_PREFIX):
            return False
        devices = {str(side): dev for side, dev in msg.devices.items()}
        held = set(self.store.session_device_ends(previous))
        if stored.start_us < msg.time_us - ADOPT_SLACK_US or not held <= set(devices.values()):
            return False  # data from before the start, or from another device: a walk of its own
        self.store.adopt_session(previous, msg.session_id, msg.patient, msg.time_us, devices)
        self._live_forget(previous)
        self._open[msg.patient] = msg.session_id
        self._last_data_us[msg.session_id] = max(self._last_data_us.pop(previous, msg.time_us), msg.time_us)
        self._last_seen.pop(previous, None)
        self._last_seen[msg.session_id] = time.monotonic()
        self.stats.starts_late_n += 1
        log.info("session %s: its start came after its first batches; they move from %s into it", msg.session_id,
                 previous)
        return True

    def _on_stop(self, msg: SessionMessage) -> None:
        """A stop that says how far each device's data goes (``ends``) is recorded; the session stays open until its
        stored data gets there (or ``STOP_GRACE_S``): a broker may deliver it before the session's last batches."""
        sid, reason = msg.session_id, msg.reason or "stopped"
        if msg.ends and self.store.session(sid) is not None:
            self.store.record_session_stop(sid, msg.time_us, reason, dict(msg.ends))
            if sid in self._open.values():  # (a replayed stop keeps waiting from the first)
                new = sid not in self._stopping
                self._stopping.setdefault(sid, (msg.time_us, reason, dict(msg.ends), time.monotonic()))
                if not self._stop_reached(sid):
                    self.stats.stops_early_n += new
                    return
        self.close_session(sid, msg.time_us, reason)

    def _stop_reached(self, session_id: str) -> bool:
        """Whether the stopping session's stored data reaches its stop's ``ends`` on every device."""
        stored = self.store.session_device_ends(session_id)
        return all(stored.get(device, -1) >= end for device, end in self._stopping[session_id][2].items())

    def _settle_sessions(self) -> None:
        """At the end of a message group: close the stopping sessions whose data has all arrived, and analyse again
        the closed sessions that late batches were added to (in the group's transaction: a crash before its commit
        redelivers the batches, which are added and analysed again)."""
        for sid, stop in list(self._stopping.items()):
            if self._stop_reached(sid):
                self.close_session(sid, stop[0], stop[1])
        while self._refinish:
            sid = self._refinish.pop()
            log.info("session %s: batches arrived after it was closed; analysing it again", sid)
            self.stats.sessions_reanalysed_n += 1
            self._finish_contained(sid)

    def close_session(self, session_id: str, end_us: int, reason: str) -> None:
        """Close the session (with its recorded stop's time and reason when it had one) and finish it."""
        stop = self._stopping.pop(session_id, None)
        if stop is not None:
            end_us, reason = stop[0], stop[1]
        closed = self.store.close_session(session_id, end_us, reason)
        for patient, sid in list(self._open.items()):
            if sid == session_id:
                del self._open[patient]
        self._last_data_us.pop(session_id, None)
        self._last_seen.pop(session_id, None)
        self._live_forget(session_id)
        # provisional strides are for running sessions; the final analysis replaces them
        self.store.delete_live_strides(session_id)
        if closed:
            self.stats.sessions_closed_n += 1
        finished = self.store.session_has_results(session_id)
        # also when a previous attempt closed the session but failed before storing its results
        if ((closed or not finished) and (self.analyze_on_close or self.archive is not None)
                and (closed or self.store.session(session_id) is not None)):
            self._finish_contained(session_id)

    def _finish_contained(self, session_id: str) -> None:
        """:meth:`finish_session` in its own savepoint. Any error of the session's data (not the database's) is
        stored as the session's result (``analysis_failed`` and the error) instead of escaping: the session is
        closed and has results, so neither the next message nor a restart runs it again, and nobody else's
        messages or sessions are rolled back with it."""
        outgoing_n, flags_n = len(self._outgoing), self.stats.flags_n
        try:
            with self.store.transaction():
                self.finish_session(session_id)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - contained: one session's failure is stored, the service goes on
            del self._outgoing[outgoing_n:]
            self.stats.flags_n = flags_n
            self.stats.sessions_failed_n += 1
            self.warn("session_failed", "session %s could not be finished: %s: %s", session_id, type(exc).__name__, exc)
            session = self.store.session(session_id)
            if session is not None:
                day = day_of(session.start_us, self.store.patient_time_zone(session.patient))
                self.store.save_session_results(session_id, session.patient, day, _NO_STRIDES, {
                    "quality_flags": ["analysis_failed"], "error": f"{type(exc).__name__}: {exc}"[:1000],
                    "session_start_us": session.start_us})

    def close_idle_sessions(self, now_monotonic: float | None = None) -> None:
        """Close sessions that received nothing for ``inactivity_s``, each in its own transaction."""
        now = time.monotonic() if now_monotonic is None else now_monotonic
        idle = [sid for sid, seen in self._last_seen.items() if now - seen > self.inactivity_s]
        grace_s = min(STOP_GRACE_S, self.inactivity_s)  # stopped: closed once their data is in, or after the grace
        idle += [sid for sid, stop in self._stopping.items()
                 if sid not in idle and (now - stop[3] > grace_s or self._stop_reached(sid))]
        if not idle:
            return
        for session_id in idle:  # each in its own transaction: one session's trouble is not another's
            saved = self._save_state()
            try:
                with self.store.transaction():
                    self.close_session(session_id, self._last_data_us.get(session_id, 0), "inactivity")
            except StoreUnavailableError:
                self._restore_state(saved)
                raise
            except Exception as exc:  # noqa: BLE001 - not the data's fault (that is stored): left open, not retried
                self._restore_state(saved)
                self._last_seen.pop(session_id, None)  # until a restart or new data
                self.warn("session_failed", "closing session %s failed: %s: %s", session_id, type(exc).__name__, exc)
                continue
            self.flush_outgoing()

    # analytics ------------------------------------------------------------------------------
    def finish_session(self, session_id: str) -> pd.DataFrame | None:
        """Archive the session's raw frames, then run the analytics and store the results.

        Both steps read the de-duplicated raw store and overwrite their previous output, so
        running this twice (e.g. after a crash and redelivery) gives the same result.
        """
        session = self.store.session(session_id)
        if session is None:
            raise KeyError(f"no session {session_id!r}")
        patient, start_us = session.patient, session.start_us
        batches = list(self.store.session_batches(session_id))
        day = day_of(start_us, self.store.patient_time_zone(patient))
        if self.archive is not None and batches:
            self.archive.write_session(patient, day, session_id, batches)
        if not self.analyze_on_close:
            return None
        try:
            recording = recording_from_batches(batches, origin_us=start_us)
            if recording is None:
                raise Implausible("the session has no stored frames", reason="no_data")
            strides, summary = run_analytics(recording)
            ignored = recording.meta.get("ignored_devices")
            if ignored:
                summary = dict(summary, ignored_devices=ignored,
                               quality_flags=[*summary.get("quality_flags", []), "extra_devices"])
        except InsoleError as exc:  # stored, so a session that cannot be analysed is not retried forever
            log.warning("session %s not analysed: %s", session_id, exc)
            strides, summary = _NO_STRIDES, {"quality_flags": [exc.reason], "error": str(exc)}
        summary = dict(summary, session_start_us=start_us)
        self.store.save_session_results(session_id, patient, day, strides, summary)
        update_daily_summary(self.store, patient, day)
        update_weekly_summary(self.store, patient, day)
        now_us = start_us if self.detection_clock == "data" else time.time_ns() // 1000
        for event in update_flags(self.store, patient, now_us=now_us, settings=self.detection_settings):
            self.stats.flags_n += 1
            if self.on_flag is not None:
                self._outgoing.append((self.on_flag, (patient, event.to_message(patient, time_us=now_us))))
        return strides


def recording_from_batches(batches: list[Batch], *, origin_us: int) -> Recording | None:
    """Place stored batches on one uniform grid per foot (missing frames stay NaN).

    Times are seconds since ``origin_us``. The foot's sample clock is fitted
    from the batches' aligned collector times (``t = a + seq / rate``), so device
    clock drift does not pull left and right apart over a long session.
    """
    feet: dict[Side, FootRecording] = {}
    ignored: dict[str, int] = {}
    for side in ("L", "R"):
        mine = primary_device_batches([b for b in batches if b.side == side], ignored)
        if not mine:
            continue
        head = mine[0]
        if any(_format(b) != _format(head) for b in mine):
            raise Implausible(f"the {side} insole {head.device_id} changed its channel count, layout, unit or rate "
                              "within the session; it is not analysed in one piece", reason="mixed_layouts")
        lo, hi = head.first_seq, max(b.last_seq for b in mine) + 1
        n = hi - lo
        if n > MAX_SESSION_S * head.sample_rate_hz:
            raise Implausible(f"the {side} foot's frames span {n} sequence numbers ({n / head.sample_rate_hz / 3600:.0f} h)"
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
    return Recording(feet=feet, source_format="kinetic-stream", meta={"origin_us": origin_us, "ignored_devices": ignored})


def primary_device_batches(batches: list[Batch], ignored: dict[str, int] | None = None) -> list[Batch]:
    """Of one side's batches, those of the device with the most frames (the insole worn), by sequence number. A
    second device on the same side (a spare insole, or a stray batch) is analysed separately from it or not at
    all, never mixed into its grid; ``ignored`` gets each other device's frame count."""
    frames_n: dict[str, int] = {}
    for b in batches:
        frames_n[b.device_id] = frames_n.get(b.device_id, 0) + b.n_frames
    if not frames_n:
        return []
    primary = max(frames_n, key=lambda d: (frames_n[d], d))
    if ignored is not None:
        ignored.update({d: n for d, n in frames_n.items() if d != primary})
    return sorted((b for b in batches if b.device_id == primary), key=lambda b: b.first_seq)


def _format(b: Batch) -> tuple:
    return (b.n_channels, b.layout_id, b.sample_rate_hz, b.pressure_unit, b.has_imu)


def run_analytics(recording: Recording) -> tuple[pd.DataFrame, dict]:
    """Gait analytics on one recording -> (per-stride table, session summary)."""
    result = analyze(recording)
    return result.strides, dict(result.summary)
