"""Provisional strides of running sessions: the processing service's live analysis.

Every foot of a running session goes through an
:class:`~processing.analytics.online.OnlineStrideDetector` (a bounded look-ahead, ~0.2 s), so
its strides can be stored and shown within a second; the session's final analysis at close is
the authoritative one and replaces them.

The service hands over *items*, one per raw batch, in each device's sequence order::

    (session_id, side, spec, first_seq, collector_time_us, data)

``spec`` is ``(rate_hz, n_channels, zero_based, pressure_scale, load_offset, head)``, what turns
the batch's pressure counts into the foot's load (the sum over the channels, in the final
analysis' units; ``head`` identifies the payload layout), and ``data`` is either the raw
payload (already validated by the service) or the load itself as an array. Consecutive
payloads of one layout are turned into loads in one vectorised step.

:class:`LiveFeet` runs the detectors in the calling process. :class:`LiveProcess` runs the same
:class:`LiveFeet` in a helper process: the service's ingest loop then only ships the payloads
(a memory copy) and stores the strides that come back, while the detectors use another core.
Results arrive asynchronously, tagged with the ``epoch`` of the request: :meth:`LiveProcess.clear`
starts a new epoch and everything of the old one is discarded.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection

import numpy as np

from insole_common.codec import pressure_counts_block
from processing.analytics.online import OnlineStride, OnlineStrideDetector

log = logging.getLogger(__name__)

#: a live stream silent for longer than this restarts its provisional analysis (no NaN padding)
MAX_LIVE_GAP_S = 30.0

#: one stride of one foot: (session id, side, stride)
LiveResult = tuple[str, str, OnlineStride]

#: socket buffer size asked for the hand-over to the helper process (the kernel may cap it)
SOCKET_BUFFER_BYTES = 4 << 20


class _Foot:
    """One foot of a running session through the online stride detector, in sequence order."""

    def __init__(self, spec: tuple, first_seq: int, time_us: int) -> None:
        rate_hz, n_channels, zero_based = spec[0], spec[1], spec[2]
        self.next_seq = first_seq
        self.rate_hz, self.n_channels = rate_hz, n_channels
        self.detector = OnlineStrideDetector(sampling_rate_hz=rate_hz, t0_s=time_us / 1e6, zero_based=zero_based)

    def feed(self, pieces: list[tuple]) -> tuple[list[OnlineStride], int]:
        """Feed ``(spec, first_seq, time_us, load)`` pieces in order, in one go, until one needs a fresh
        stream (a long gap, another rate or channel count); the strides completed and the pieces taken."""
        arrays = []
        taken = 0
        for spec, first_seq, _t, load in pieces:
            gap = first_seq - self.next_seq
            if spec[0] != self.rate_hz or spec[1] != self.n_channels or gap > MAX_LIVE_GAP_S * self.rate_hz:
                break
            taken += 1
            skip = max(0, -gap)
            if skip >= load.size:
                continue  # already seen (a duplicate or a late, reordered batch): the final analysis has it
            if gap > 0:
                arrays.append(np.full(gap, np.nan))  # missing frames
            arrays.append(load[skip:] if skip else load)
            self.next_seq = first_seq + load.size
        if not arrays:
            return [], taken
        return self.detector.feed(arrays[0] if len(arrays) == 1 else np.concatenate(arrays)), taken


def _loads(spec: tuple, payloads: list[bytes]) -> np.ndarray:
    """The foot's load per frame of same-layout payloads, ``(k, n_frames)``, in one vectorised step."""
    counts = pressure_counts_block(payloads)
    k, n_frames, n_channels = counts.shape
    # the channel sum as a float64 matrix-vector product: exact (integer counts, far below 2**53) and about three
    # times faster than an int64 sum over a 16-wide axis
    loads = (counts.reshape(k * n_frames, n_channels).astype(np.float64) @ np.ones(n_channels)) * spec[3]
    loads += spec[4]
    return loads.reshape(k, n_frames)


class LiveFeet:
    """The online stride detectors of every running foot, keyed by ``(session_id, side)``."""

    def __init__(self) -> None:
        self._feet: dict[tuple[str, str], _Foot] = {}

    def feed(self, items: Iterable[tuple]) -> list[LiveResult]:
        """Feed items (see the module docstring); return the strides they complete. A foot whose analysis
        fails is logged and restarted with its next data; the other feet go on."""
        # per foot, in order: runs of one spec and kind of data, [spec, is_load, [(first_seq, time_us, data)]]
        feet: dict[tuple[str, str], list[list]] = {}
        for session_id, side, spec, first_seq, time_us, data in items:
            runs = feet.setdefault((session_id, side), [])
            is_load = isinstance(data, np.ndarray)
            if not runs or runs[-1][0] != spec or runs[-1][1] != is_load:
                runs.append([spec, is_load, []])
            runs[-1][2].append((first_seq, time_us, data))
        out: list[LiveResult] = []
        for key, runs in feet.items():
            try:
                pieces = []
                for spec, is_load, run in runs:
                    loads = [d for _s, _t, d in run] if is_load else _loads(spec, [d for _s, _t, d in run])
                    pieces += [(spec, s, t, loads[k]) for k, (s, t, _d) in enumerate(run)]
                i = 0
                while i < len(pieces):
                    foot = self._feet.get(key)
                    if foot is None:  # a new foot, a restart, a long silence: start afresh at this piece
                        spec, first_seq, time_us, _load = pieces[i]
                        foot = self._feet[key] = _Foot(spec, first_seq, time_us)
                    got, taken = foot.feed(pieces[i:])
                    out += [(key[0], key[1], st) for st in got]
                    if taken == 0:
                        del self._feet[key]
                    i += taken
            except Exception as exc:  # noqa: BLE001 - provisional strides must never disturb ingest
                log.warning("live analysis of %s %s stopped: %s", key[0], key[1], exc)
                self._feet.pop(key, None)
        return out

    def forget(self, session_id: str) -> None:
        """Drop both feet of a session (it closed)."""
        for side in ("L", "R"):
            self._feet.pop((session_id, side), None)

    def clear(self) -> None:
        self._feet.clear()


def _serve(conn) -> None:
    """The helper process: requests ``(op, epoch, arg)`` in, one ``(epoch, results)`` reply per feed out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the service, which then stops this process
    feet = LiveFeet()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the service is gone
        if request is None:
            return
        op, epoch, arg = request
        if op == "feed":
            conn.send((epoch, [(sid, side, tuple(st)) for sid, side, st in feet.feed(arg)]))  # (plain tuples)
        elif op == "forget":
            feet.forget(arg)
        elif op == "clear":
            feet.clear()


class LiveProcess:
    """:class:`LiveFeet` in a helper process (see the module docstring).

    Not thread-safe: one thread (the service's ingest loop) submits and collects. If the helper
    dies, :attr:`failed` is set and the caller falls back to in-process analysis.
    """

    def __init__(self) -> None:
        # a fresh interpreter (no fork of a process that runs paho's thread, and unlike multiprocessing's
        # "spawn" no re-import of the caller's main module), talking over a socket pair
        ours, theirs = socket.socketpair()
        for sock in (ours, theirs):  # room for a whole message group (~0.6 MB): fewer wake-ups per hand-over
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        self._proc = subprocess.Popen([sys.executable, "-m", "processing.live", str(theirs.fileno())],
                                      pass_fds=(theirs.fileno(),))
        theirs.close()
        self._conn = Connection(ours.detach())
        self._epoch = 0
        self.outstanding_n = 0  # feeds sent whose reply has not been read
        self.failed = False
        self._pending: list[LiveResult] = []  # replies read early (before a send)

    def _send(self, request: tuple) -> None:
        if self.failed:
            return
        try:
            self._conn.send(request)
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if not self.failed:
            log.error("the live-analysis process failed (%s); analysing in the worker from now on", exc)
        self.failed = True
        self.outstanding_n = 0

    def submit(self, items: list[tuple]) -> None:
        # read waiting replies first, so the helper never blocks on a full pipe while we send
        if items:
            self._pending = self.collect()
            self._send(("feed", self._epoch, items))
            if not self.failed:
                self.outstanding_n += 1

    def collect(self, timeout_s: float = 0.0) -> list[LiveResult]:
        """Results that have arrived; with ``timeout_s`` > 0, wait up to that long for all outstanding ones."""
        out, self._pending = self._pending, []
        if self.failed:
            return out
        deadline = time.monotonic() + timeout_s
        try:
            while self.outstanding_n and self._conn.poll(max(deadline - time.monotonic(), 0)):
                epoch, results = self._conn.recv()
                self.outstanding_n -= 1
                if epoch == self._epoch:
                    out += [(sid, side, OnlineStride._make(st)) for sid, side, st in results]
        except (EOFError, OSError) as exc:
            self._fail(exc)
        return out

    def forget(self, session_id: str) -> None:
        self._send(("forget", self._epoch, session_id))

    def clear(self) -> None:
        """Forget every foot; replies to earlier requests are discarded."""
        self._epoch += 1
        self._pending = []
        self._send(("clear", self._epoch, None))

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._conn.close()


if __name__ == "__main__":  # the helper process of LiveProcess: python -m processing.live FD
    _serve(Connection(int(sys.argv[1])))
