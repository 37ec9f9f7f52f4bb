"""Raw batches: every accepted frame exactly once (``raw_batches``, ``raw_session_ranges``), and the audit
of rejected input (``rejections``).

A row of ``raw_batches`` holds a run of consecutive batches of one device and session (:func:`runs_of`), their
wire payloads laid end to end; :func:`split_raw_rows` and :meth:`RawBatches.session_batches` cut them apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from insole_common.codec import MAX_FRAMES, Batch, decode_batch, encode_batch, split_payloads
from storage.base import RawOverlapError
from storage.devices import Devices


@dataclass(frozen=True)
class StoredBatchResult:
    """What :meth:`Store.add_raw_batch` kept of a batch."""

    accepted_frames_n: int
    duplicate_frames_n: int


#: FROM clause of a session's raw batches (``r``), one parameter: the session id. Each device's rows are a
#: range of its primary key (device_id, first_seq); ``session_id`` is checked because sessions of a device
#: can interleave when late batches arrive (a batch belongs to the session open when it arrived)
_SESSION_RAW = ("FROM raw_session_ranges s JOIN raw_batches r ON r.device_id = s.device_id "
                "AND r.first_seq >= s.first_seq AND r.first_seq < s.end_seq AND r.session_id = s.session_id "
                "WHERE s.session_id = ?")

#: widens a session's range of a device to take in newly stored batches
_RANGE_UPSERT = (
    "INSERT INTO raw_session_ranges (session_id, device_id, side, first_seq, end_seq) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (session_id, device_id) DO UPDATE SET "
    "first_seq = CASE WHEN excluded.first_seq < raw_session_ranges.first_seq "
    "THEN excluded.first_seq ELSE raw_session_ranges.first_seq END, "
    "end_seq = CASE WHEN excluded.end_seq > raw_session_ranges.end_seq "
    "THEN excluded.end_seq ELSE raw_session_ranges.end_seq END")

_INSERT_RAW = ("INSERT INTO raw_batches (device_id, first_seq, n_frames, session_id, side, collector_time_us, payload) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)")


class RawBatches(Devices):
    """The store's raw batches and rejections (a mixin of :class:`storage.store.Store`)."""

    def add_raw_batch(self, batch: Batch, patient: str, session_id: str, *, payload: bytes | None = None) -> StoredBatchResult:
        """Keep every frame of ``batch`` not already stored (exactly once per device and seq). ``payload``, when
        given, is the batch's own wire encoding (stored as is when nothing overlaps). Raises
        :class:`storage.devices.DeviceOwnerError` when the device belongs to another patient."""
        lo, hi = batch.first_seq, batch.first_seq + batch.n_frames
        with self._tx() as ex:
            self._lock_devices(ex, [batch.device_id])
            self._claim_device(ex, batch.device_id, patient, batch.side, batch.layout_id, batch.collector_time_us)
            # a stored batch overlapping [lo, hi) starts after lo - MAX_FRAMES: a bounded index range
            overlaps = ex(
                "SELECT first_seq, first_seq + n_frames FROM raw_batches WHERE device_id = ? AND first_seq > ? "
                "AND first_seq < ? AND first_seq + n_frames > ? ORDER BY first_seq",
                (batch.device_id, lo - MAX_FRAMES, hi, lo),
            ).fetchall()
            kept = 0
            for a, b in _uncovered(lo, hi, [tuple(r) for r in overlaps]):
                whole = (a, b) == (lo, hi)
                piece = batch if whole else _slice_batch(batch, a - lo, b - lo)
                ex(_INSERT_RAW, (piece.device_id, piece.first_seq, piece.n_frames, session_id, piece.side,
                                 piece.collector_time_us, payload if whole and payload is not None else encode_batch(piece)))
                kept += b - a
                self._note_ranges([(batch.device_id, a, b - a, session_id, batch.side)])
        return StoredBatchResult(kept, batch.n_frames - kept)

    def _note_ranges(self, rows) -> None:
        """Record in ``raw_session_ranges`` the sequence ranges of stored rows ``(device_id, first_seq, n_frames,
        session_id, side, ...)`` (in the caller's transaction)."""
        ranges: dict[tuple[str, str], list] = {}
        for device_id, first_seq, n_frames, session_id, side, *_ in rows:
            r = ranges.get((session_id, device_id))
            if r is None:
                ranges[(session_id, device_id)] = [side, first_seq, first_seq + n_frames]
            else:
                r[1] = min(r[1], first_seq)
                r[2] = max(r[2], first_seq + n_frames)
        self._executemany(_RANGE_UPSERT, [(sid, dev, side, lo, hi) for (sid, dev), (side, lo, hi) in ranges.items()])

    def add_raw_payloads(self, rows: list[tuple]) -> None:
        """Store whole batches: rows of ``(device_id, first_seq, n_frames, session_id, side, collector_time_us,
        payload)``, each device's in sequence order and after everything stored of that device (the caller
        checks with :meth:`raw_end_seq`). Consecutive batches of one device and session go into one row (see
        :func:`runs_of`). Raises :class:`RawOverlapError`, storing nothing, when a device's stored frames
        reach past the first of its rows (stored behind the caller's back)."""
        if not rows:
            return
        runs = runs_of(rows)
        with self._tx() as ex:
            firsts: dict[str, int] = {}
            for device_id, first_seq, *_ in runs:
                firsts.setdefault(device_id, first_seq)
            devices = sorted(firsts)
            self._lock_devices(ex, devices)
            for device_id, end in self._stored_ends(ex, devices).items():
                if end is not None and end > firsts[device_id]:
                    raise RawOverlapError(f"{device_id}: frames up to {end - 1} are stored already, the batches "
                                          f"to add start at {firsts[device_id]}")
            self._executemany(_INSERT_RAW, runs)
            self._note_ranges(runs)

    @staticmethod
    def _stored_ends(ex, device_ids: list[str]) -> dict[str, int | None]:
        """Per device one past its highest stored sequence number (None: nothing stored), in one statement (one
        round trip on PostgreSQL); the row with the highest first_seq ends last, since rows never overlap."""
        values = ", ".join(["(?)"] * len(device_ids))  # placeholders only; the ids are bound parameters
        sql = ("SELECT v.column1, (SELECT r.first_seq + r.n_frames FROM raw_batches r "  # noqa: S608 - placeholders only
               f"WHERE r.device_id = v.column1 ORDER BY r.first_seq DESC LIMIT 1) FROM (VALUES {values}) AS v")
        rows = ex(sql, tuple(device_ids)).fetchall()
        return {device_id: None if end is None else int(end) for device_id, end in rows}

    def raw_end_seq(self, device_id: str) -> int | None:
        """One past the device's highest stored sequence number (None when nothing is stored)."""
        with self._tx() as ex:
            return self._stored_ends(ex, [device_id])[device_id]

    def raw_device_tail(self, device_id: str) -> Batch | None:
        """The device's stored batch with the highest sequence numbers (None when nothing is stored)."""
        rows = self._rows("SELECT payload FROM raw_batches WHERE device_id = ? ORDER BY first_seq DESC LIMIT 1",
                          (device_id,))
        return decode_batch(split_payloads(rows[0][0])[-1]) if rows else None

    def session_batches(self, session_id: str) -> Iterator[Batch]:
        """The session's stored batches, by side then sequence number."""
        with self._tx() as ex:
            rows = ex(f"SELECT r.payload {_SESSION_RAW} ORDER BY r.side, r.first_seq", (session_id,)).fetchall()
        for (payload,) in rows:
            for piece in split_payloads(payload):
                yield decode_batch(piece)

    def latest_session_batch(self, session_id: str) -> Batch | None:
        """The session's stored batch with the latest collector time (None when it has none)."""
        with self._tx() as ex:  # per device its last row in the session; of their last batches the latest
            rows = ex("SELECT (SELECT r.payload FROM raw_batches r WHERE r.device_id = s.device_id "
                      "AND r.first_seq >= s.first_seq AND r.first_seq < s.end_seq AND r.session_id = s.session_id "
                      "ORDER BY r.first_seq DESC LIMIT 1) FROM raw_session_ranges s WHERE s.session_id = ?",
                      (session_id,)).fetchall()
        last = [decode_batch(split_payloads(payload)[-1]) for (payload,) in rows if payload is not None]
        return max(last, key=lambda b: b.collector_time_us, default=None)

    def record_rejection(self, time_us: int, topic: str, reason: str, message: str, payload: bytes | None) -> None:
        """Audit one rejected message (its topic, reason and the head of its payload)."""
        with self._tx() as ex:
            ex(
                "INSERT INTO rejections (time_us, topic, reason, message, payload_head) VALUES (?, ?, ?, ?, ?)",
                (time_us, topic[:500], reason, message[:1000], None if payload is None else bytes(payload[:64])),
            )


def runs_of(rows: list[tuple]) -> list[tuple]:
    """Rows of ``raw_batches`` for batches given as rows ``(device_id, first_seq, n_frames, session_id, side,
    collector_time_us, payload)``: consecutive batches of one device and session (each starting where the
    one before it ended) become one row of up to ``MAX_FRAMES`` frames, with the first batch's
    ``collector_time_us`` and the payloads end to end. One row per batch would cost an entry in the
    primary key each: measured 12.6-14.6 -> 7.6-8.3 us per stored batch (docs/benchmarks.md)."""
    out: list[list] = []
    last: dict[str, list] = {}  # device id -> its latest run
    for device_id, first_seq, n_frames, session_id, side, time_us, payload in rows:
        run = last.get(device_id)
        if (run is not None and run[1] + run[2] == first_seq and run[3] == session_id
                and run[2] + n_frames <= MAX_FRAMES):
            run[2] += n_frames
            run[6].append(payload)
            continue
        run = last[device_id] = [device_id, first_seq, n_frames, session_id, side, time_us, [payload]]
        out.append(run)
    return [(*r[:6], r[6][0] if len(r[6]) == 1 else b"".join(r[6])) for r in out]


def split_raw_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``raw_batches`` (any columns, ``payload`` among them) as one row per stored batch: ``first_seq``,
    ``n_frames``, ``collector_time_us`` and ``payload`` of each batch (decoded and checked), the other
    columns copied from its row."""
    out = []
    for rec in rows.to_dict("records"):
        for piece in split_payloads(rec["payload"]):
            b = decode_batch(piece)
            out.append({**rec, "first_seq": b.first_seq, "n_frames": b.n_frames,
                        "collector_time_us": b.collector_time_us, "payload": piece})
    return pd.DataFrame(out, columns=rows.columns)


def _uncovered(lo: int, hi: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sub-ranges of [lo, hi) not covered by the sorted ranges ``covered``."""
    out, cursor = [], lo
    for a, b in covered:
        if a > cursor:
            out.append((cursor, min(a, hi)))
        cursor = max(cursor, b)
        if cursor >= hi:
            break
    if cursor < hi:
        out.append((cursor, hi))
    return out


def _slice_batch(batch: Batch, start: int, end: int) -> Batch:
    fields = dict(batch.__dict__)
    period_us = 1e6 / batch.sample_rate_hz
    fields.update(
        first_seq=batch.first_seq + start,
        device_time_us=batch.device_time_us + int(round(start * period_us)),
        collector_time_us=batch.collector_time_us + int(round(start * period_us)),
        pressure_raw=batch.pressure_raw[start:end].copy(),
        imu_raw=None if batch.imu_raw is None else batch.imu_raw[start:end].copy(),
    )
    return Batch(**fields)
