"""The collector's outbox as it is used while streaming: memory first, a journal for crashes, the SQLite outbox
(:class:`storage.outbox.Outbox`) at checkpoints.

A message put into the :class:`Spool` is held in memory and published from there; the frames it was cut from
are already in the journal (:class:`storage.journal.FrameJournal`, one ``write`` per notification, written by
the collector), so a SIGKILL loses at most the notification being handled. Every checkpoint (the collector's
``checkpoint_interval_s``, and at once for session messages) writes, in one SQLite transaction, every message
not yet acknowledged (under its own id, so the order is kept) and deletes the acknowledged ones; then the
journal starts afresh with the frames not yet in a whole batch. With a broker that acknowledges in
milliseconds almost nothing reaches SQLite: the disk sees the journal's bytes and one small commit per
checkpoint, instead of a commit per batch, per acknowledgement and per staging (docs/collector.md: measured).

A full disk (``SQLITE_FULL``, ``ENOSPC``) does not stop the collector: :attr:`Spool.storage_full` is set (the
collector reports it in its status), messages stay in memory and are still published, and every checkpoint
tries again; the first that succeeds clears it. Drop policy: while the disk is full, messages not on disk may
take up to ``memory_budget_bytes``; past that, new messages are refused (:class:`StorageFullError`, counted by
the collector as dropped), the oldest kept, as the outbox does when its byte budget is reached. Messages on disk
are evicted from memory past the same budget (a long broker outage) and published from SQLite again.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

from storage.journal import FrameJournal
from storage.outbox import Outbox, OutboxFullError, OutboxItem

log = logging.getLogger(__name__)


class StorageFullError(OutboxFullError):
    """The disk is full and the memory kept for it is used up: the message was not kept."""

    reason = "storage_full"


def _is_storage_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, None)


class Spool:
    """Memory-first outbox with a journal; the same interface as :class:`Outbox` for the publisher. Thread-safe."""

    def __init__(self, path: str | Path, *, budget_bytes: int = 512 * 1024 * 1024,
                 memory_budget_bytes: int = 64 * 1024 * 1024) -> None:
        self.outbox = Outbox(path, budget_bytes=budget_bytes)
        self.path = self.outbox.path
        self.budget_bytes = budget_bytes
        self.memory_budget_bytes = memory_budget_bytes
        self.journal = FrameJournal(self.path.with_name(self.path.name + ".journal"))
        self._lock = threading.RLock()
        self._mem: OrderedDict[int, tuple[OutboxItem, bool]] = OrderedDict()  # id -> (item, on disk)
        self._mem_bytes = 0
        self._unspilled_bytes = 0
        self._deletes: list[int] = []
        self._count = len(self.outbox)
        self._next_id = self.outbox.max_id() + 1
        #: the disk refused a write; cleared by the next checkpoint that succeeds
        self.storage_full = False
        self.storage_error = ""
        self.storage_full_events_n = 0
        self.refused_n = 0
        self._journal_ok = True

    # the outbox interface ------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Keep one message (in memory until the next checkpoint) and return its id."""
        size = len(payload) + len(topic)
        with self._lock:
            if self.outbox.size_bytes + self._unspilled_bytes + size > self.budget_bytes:
                self.refused_n += 1
                raise OutboxFullError(f"outbox {self.path} is full ({self.budget_bytes} bytes); the broker has been "
                                      "unreachable too long, new data is not being kept")
            if self.storage_full and self._unspilled_bytes + size > self.memory_budget_bytes:
                self.refused_n += 1
                raise StorageFullError(f"the disk of {self.path} is full ({self.storage_error}) and "
                                       f"{self.memory_budget_bytes} bytes in memory are used up: new data is dropped")
            item_id = self._next_id
            self._next_id += 1
            self._mem[item_id] = (OutboxItem(item_id, topic, payload, qos, retain), False)
            self._mem_bytes += size
            self._unspilled_bytes += size
            self._count += 1
            return item_id

    def peek(self, *, after_id: int = 0, limit: int = 100) -> list[OutboxItem]:
        """The oldest messages not yet acknowledged with id > after_id, in order (disk first, then memory)."""
        with self._lock:
            first_mem = next(iter(self._mem), self._next_id)
            out: list[OutboxItem] = []
            if after_id + 1 < first_mem:
                gone = set(self._deletes)
                out = [r for r in self.outbox.peek_range(after_id=after_id, before_id=first_mem, limit=limit + len(gone))
                       if r.id not in gone][:limit]
            for item_id, (item, _on_disk) in self._mem.items():
                if len(out) >= limit:
                    break
                if item_id > after_id:
                    out.append(item)
        return out

    def ack(self, item_id: int) -> None:
        """The broker acknowledged the message: forget it (deleted from disk at the next checkpoint)."""
        with self._lock:
            entry = self._mem.pop(item_id, None)
            if entry is not None:
                size = len(entry[0].payload) + len(entry[0].topic)
                self._mem_bytes -= size
                if not entry[1]:
                    self._unspilled_bytes -= size
                    self._count -= 1
                    return
            self._deletes.append(item_id)
            self._count -= 1

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self.outbox.size_bytes + self._unspilled_bytes

    @property
    def fill_fraction(self) -> float:
        return min(1.0, self.size_bytes / self.budget_bytes) if self.budget_bytes else 1.0

    @property
    def memory_bytes(self) -> int:
        return self._mem_bytes

    def seq_mark(self, device_id: str) -> tuple[int, int] | None:
        return self.outbox.seq_mark(device_id)

    def staged(self) -> list[tuple[str, str, bytes]]:
        return self.outbox.staged()

    def recover_staged(self) -> int:
        """Partial batches a previous version staged in SQLite, into the outbox (before anything new)."""
        with self._lock:
            n = self.outbox.recover_staged()
            self._count = len(self.outbox) + len(self._mem)
            self._next_id = max(self._next_id, self.outbox.max_id() + 1)
        return n

    # journal and checkpoints ------------------------------------------------------------------
    def journal_records(self) -> list[bytes]:
        """What the journal holds (read at start-up: what a killed run decoded after its last checkpoint)."""
        return self.journal.read()

    def journal_append(self, body: bytes) -> None:
        """Append one record to the journal; on a full disk it is kept in memory only (``storage_full``)."""
        if not self._journal_ok:
            return
        try:
            self.journal.append(body)
        except OSError as exc:
            self._journal_ok = False
            self._trouble(exc)

    def checkpoint(self, journal_bodies: list[bytes], seq_marks: list[tuple[str, int, int]]) -> bool:
        """Every message not yet acknowledged to SQLite, the acknowledged ones deleted, the sequence marks raised;
        then the journal replaced by ``journal_bodies`` (frames not yet in a message). False: the disk refused
        (``storage_full`` set, nothing lost from memory)."""
        with self._lock:
            rows = [item for item, on_disk in self._mem.values() if not on_disk]
            deletes = list(self._deletes)
            try:
                self.outbox.spill(rows, deletes, seq_marks)
            except (sqlite3.Error, OSError) as exc:
                if not _is_storage_error(exc):
                    raise
                self._trouble(exc)
                return False
            for r in rows:
                if r.id in self._mem:
                    self._mem[r.id] = (r, True)
                    self._unspilled_bytes -= len(r.payload) + len(r.topic)
            del self._deletes[: len(deletes)]
            try:
                self.journal.rewrite(journal_bodies)
            except OSError as exc:
                self._journal_ok = False
                self._trouble(exc)
                return False
            self._journal_ok = True
            if self.storage_full:
                log.warning("storage is writable again (%s); the collector keeps everything on disk again", self.path)
            self.storage_full, self.storage_error = False, ""
            while self._mem_bytes > self.memory_budget_bytes:  # a long outage: the oldest wait on disk only
                item_id, (item, on_disk) = next(iter(self._mem.items()))
                if not on_disk:
                    break
                del self._mem[item_id]
                self._mem_bytes -= len(item.payload) + len(item.topic)
        return True

    def _trouble(self, exc: BaseException) -> None:
        if not self.storage_full:
            self.storage_full_events_n += 1
            log.error("cannot write to %s (%s): keeping recordings in memory and retrying at every checkpoint",
                      self.path, exc)
        self.storage_full, self.storage_error = True, str(exc)[:200]

    def close(self, *, journal_bodies: list[bytes] | None = None) -> None:
        """A last checkpoint (best effort), then close the files."""
        try:
            self.checkpoint(journal_bodies or [], [])
        finally:
            self.journal.close()
            self.outbox.close()


__all__ = ["OutboxFullError", "Spool", "StorageFullError"]
