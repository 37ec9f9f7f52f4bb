"""The processing service's in-memory state, in one place: what the ingest (:mod:`processing.ingest`), the live
strides (:mod:`processing.live_strides`) and the sessions (:mod:`processing.sessions`) parts of
:class:`processing.service.ProcessingService` share, and how a rolled-back message or group forgets its effects
on it. Everything that must survive a restart is in the store; this is rebuilt from it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from processing.detection_settings import DetectionSettings
from processing.live import LiveFeet, LiveProcess
from storage.archive import RawArchive
from storage.health import Metric, WarningLimiter, by_reason, counter, gauge
from storage.store import Store

if TYPE_CHECKING:
    from insole_common.messages import FlagMessage, SessionMessage
    from processing.analytics.online import OnlineStride

log = logging.getLogger("processing.service")
#: a raw batch whose last frame is older than this when it arrives counts as late (ServiceStats.late_batches_n)
LATE_S = 60.0


@dataclass
class ServiceStats:
    messages_n: int = 0
    #: message groups committed, each in one transaction (messages_n / groups_n: messages per transaction)
    groups_n: int = 0
    batches_n: int = 0
    frames_accepted_n: int = 0
    frames_duplicate_n: int = 0
    sessions_closed_n: int = 0
    store_retries_n: int = 0
    live_strides_n: int = 0
    flags_n: int = 0
    #: sessions whose finishing failed on their data (stored as ``analysis_failed``; processing.sessions)
    sessions_failed_n: int = 0
    #: raw batches that arrived more than LATE_S after their last frame (an outbox drained after an outage)
    late_batches_n: int = 0
    #: session stops that came before the session's last batches (waited for), and closed sessions analysed again
    #: because batches of theirs came after the close (processing.sessions)
    stops_early_n: int = 0
    sessions_reanalysed_n: int = 0
    #: session starts that came after the session's first batches (the implicit session they were in adopted)
    starts_late_n: int = 0
    rejected: Counter = field(default_factory=Counter)

    @property
    def rejected_n(self) -> int:
        return sum(self.rejected.values())


class ServiceState:
    """The state of a running service (the base of its parts); the configuration is set by the service."""

    store: Store
    archive: RawArchive | None
    live_strides: bool
    analyze_on_close: bool
    inactivity_s: float
    detection_settings: DetectionSettings

    if TYPE_CHECKING:  # provided by the other parts of ProcessingService, declared so each part type-checks alone
        def _on_session(self, msg: SessionMessage) -> None: ...
        def _live_submit(self, items: list[tuple], patients: dict[str, str]) -> None: ...
        def _live_forget(self, session_id: str) -> None: ...
        def flush_outgoing(self, *, all_live: bool = True) -> None: ...
        def _settle_sessions(self) -> None: ...

    def _init_state(self) -> None:
        self.stats = ServiceStats()
        #: rejected input and failed sessions: every one counted by reason, a few logged per minute
        self.warnings = WarningLimiter(log)
        self.inbox_depth: Callable[[], int] = lambda: 0  # set by run()
        self._open: dict[str, str] = {}  # patient -> open session id
        #: provisional live analysis, in this process or (from run(), ``live_process``) in a helper process
        self._live_feet = LiveFeet()
        self._live_proc: LiveProcess | None = None
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
        self.on_live_strides: Callable[[str, str, list[tuple[str, OnlineStride]]], None] | None = None
        #: hot path: raw topic -> its last fully decoded batch; device -> one past its highest stored seq
        self._raw_topics: dict = {}
        self._device_end: dict[str, int] = {}
        #: rows of the group's fast-path messages not yet inserted, and those messages (for the fallback)
        self._pending_raw: list[tuple] = []
        self._pending_feed: list[tuple] = []  # live-analysis items (processing.live)
        self._pending_patients: dict[str, str] = {}  # session id -> patient of the pending items
        self._pending_msgs: list[tuple[str, bytes]] = []
        #: called with (patient, FlagMessage) for each new compensation flag event; set by run()
        self.on_flag: Callable[[str, FlagMessage], Any] | None = None
        #: "wall" stamps flags with the service's clock; "data" with the session's own time (replays, demo)
        self.detection_clock = "wall"
        self._last_data_us: dict[str, int] = {}  # session id -> end of its latest data (collector time)
        #: session id -> time.monotonic() of its latest message: inactivity is about arrivals, not data
        #: time (a replay of old data must not look idle)
        self._last_seen: dict[str, float] = {}
        #: messages to publish once the current transaction has committed (flags, live strides)
        self._outgoing: list = []
        #: session id -> its stop (time_us, reason, ends, time.monotonic() when it came), for open sessions whose
        #: stored data had not reached the stop's ``ends`` yet (processing.sessions: closed once it has)
        self._stopping: dict[str, tuple[int, str, dict[str, int], float]] = {}
        #: closed sessions that late batches were added to in this transaction: analysed again before its commit
        self._refinish: set[str] = set()
        self._in_group = False  # handle_group is running (it settles sessions once, at its end)

    def _save_state(self) -> tuple:
        stats = dataclasses.replace(self.stats, rejected=Counter(self.stats.rejected))  # cheap: runs per message
        return (dict(self._open), dict(self._last_data_us), dict(self._last_seen), stats, dict(self._stopping),
                set(self._refinish))

    def _restore_maps(self, saved: tuple) -> None:
        """The session maps as :meth:`_save_state` saved them (the stats are the caller's to restore)."""
        self._open, self._last_data_us, self._last_seen = dict(saved[0]), dict(saved[1]), dict(saved[2])
        self._stopping, self._refinish = dict(saved[4]), set(saved[5])

    def _restore_state(self, saved: tuple) -> None:
        """Forget the effects of a group that was rolled back (the store retries are counted on)."""
        self._restore_maps(saved)
        stats = saved[3]
        stats.store_retries_n = self.stats.store_retries_n
        self.stats = stats
        self._outgoing.clear()  # nothing of a rolled-back group is announced
        self._live_clear()  # provisional analysis restarts with the next data
        self._device_end.clear()
        self._pending_raw, self._pending_feed, self._pending_msgs, self._pending_patients = [], [], [], {}

    def _live_clear(self) -> None:
        self._live_rows, self._live_held = [], []
        self._live_feet.clear()
        if self._live_proc is not None:
            self._live_proc.clear()
        self._live_keys.clear()

    def warn(self, reason: str, msg: str, *args: object, exc_info: bool = False) -> None:
        """A rate-limited warning, counted under ``reason`` (``self.warnings``)."""
        self.warnings.warn(reason, msg, *args, exc_info=exc_info)

    def metrics(self) -> list[Metric]:
        """The service's counters for the health endpoint (``kinetic process --metrics-port``)."""
        s, p = self.stats, "kinetic_processing_"
        return [
            counter(p + "messages_total", "MQTT messages handled (committed)", s.messages_n),
            counter(p + "groups_committed_total", "message groups committed, each in one transaction", s.groups_n),
            counter(p + "batches_stored_total", "raw batches stored", s.batches_n),
            counter(p + "frames_stored_total", "raw frames stored (exactly once per device and sequence number)",
                    s.frames_accepted_n),
            counter(p + "frames_duplicate_total", "raw frames dropped as already stored", s.frames_duplicate_n),
            by_reason(p + "rejected_total", "messages rejected, by reason", dict(s.rejected)),
            by_reason(p + "warnings_total", "warnings raised (rate-limited in the log), by reason",
                      dict(self.warnings.counts)),
            counter(p + "late_batches_total", f"raw batches that arrived more than {LATE_S:.0f} s after their data",
                    s.late_batches_n),
            counter(p + "sessions_closed_total", "sessions closed", s.sessions_closed_n),
            counter(p + "stops_early_total", "session stops that came before the session's last batches (waited for)",
                    s.stops_early_n),
            counter(p + "starts_late_total", "session starts that came after the session's first batches (adopted)",
                    s.starts_late_n),
            counter(p + "sessions_reanalysed_total", "closed sessions analysed again with batches that came late",
                    s.sessions_reanalysed_n),
            counter(p + "sessions_failed_total", "sessions whose analysis failed (stored as analysis_failed)",
                    s.sessions_failed_n),
            counter(p + "store_retries_total", "message groups retried because the database was unavailable",
                    s.store_retries_n),
            gauge(p + "open_sessions", "sessions open now", len(self._open)),
            gauge(p + "inbox_depth", "messages received and not yet handled", self.inbox_depth()),
        ]
