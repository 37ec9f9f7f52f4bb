"""The service's side of the live analysis: provisional strides stored and announced while sessions run.

Each foot's load goes through :class:`processing.analytics.online.OnlineStrideDetector`
(:mod:`processing.live`), in this process or, under :meth:`~processing.service.ProcessingService.run` with
``live_process``, in a helper process. In-process a stride is stored in ``live_strides`` in the transaction
of the batch that completes it; from the helper, in the transaction of a later group (or right after, when
the worker is idle). Under ``run`` with a backlog, strides are written at most every ``LIVE_ANNOUNCE_S``
(each write rewrites an index page of ``live_strides`` per running foot); as soon as the inbox is
empty, at once. Either way a stride is announced on the strides topic after its commit. Closing the
session replaces them with the final analysis. Provisional strides not yet written when the worker
dies are not recovered: the session's final analysis has them.
"""

from __future__ import annotations

import logging
import math
import time

from processing.analytics.online import OnlineStride
from processing.live import LiveResult
from processing.state import ServiceState
from storage.store import StoreUnavailableError

log = logging.getLogger(__name__)

#: under load, live strides are announced at most this often (s); when the worker is idle, at once
LIVE_ANNOUNCE_S = 0.2


class LiveStridesMixin(ServiceState):
    """Live strides of :class:`processing.service.ProcessingService` (see the module docstring)."""

    def _live_submit(self, items: list[tuple], patients: dict[str, str]) -> None:
        """Hand live-analysis items (see :mod:`processing.live`) to the analysis. In this process the strides
        they complete are stored at once; from the helper process with a later group (or when idle)."""
        keys = self._live_keys
        for key in {(it[0], it[1]) for it in items}:
            if key not in keys:  # a new foot, or the first data after a restart: skip what is stored already
                stored = self.store.last_live_heel_strike_s(*key)
                keys[key] = (patients[key[0]], -math.inf if stored is None else stored + 0.2)
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
            except Exception:
                log.exception("could not publish a result")
