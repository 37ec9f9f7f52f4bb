"""Sessions and what they produce: ``sessions``, the final analysis (``strides``, ``session_summaries``) and
the provisional strides of running sessions (``live_strides``, replaced by the final analysis at close)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from storage.base import StoreBase, jsonable


@dataclass(frozen=True)
class SessionRow:
    """One row of ``sessions``."""

    session_id: str
    patient: str
    start_us: int
    state: str  # "open" or "closed"


@dataclass(frozen=True)
class SessionStop:
    """A session's stop message as recorded (``session_stops``, ``session_stop_ends``)."""

    time_us: int
    reason: str
    #: device id -> one past the last sequence number the collector sent in the session
    ends: dict[str, int]


class Sessions(StoreBase):
    """The store's sessions, their results and live strides (a mixin of :class:`storage.store.Store`)."""

    def open_session(self, session_id: str, patient: str, start_us: int, devices: dict[str, str]) -> bool:
        """Create the session if new; True when it was created."""
        with self._tx() as ex:
            self._ensure_patient(ex, patient, start_us)
            cur = ex(
                "INSERT INTO sessions (session_id, patient, start_us, state, devices_json) VALUES (?, ?, ?, 'open', ?) "
                "ON CONFLICT (session_id) DO NOTHING",
                (session_id, patient, start_us, json.dumps(devices, sort_keys=True)),
            )
            return cur.rowcount == 1

    def adopt_session(self, implicit_id: str, session_id: str, patient: str, start_us: int,
                      devices: dict[str, str]) -> None:
        """Make the open implicit session ``implicit_id`` (data that came before its start message) the session
        ``session_id`` that the start announced: the new session takes its raw batches and sequence ranges, its
        provisional strides are dropped (recomputed from the next batches) and the implicit session is gone."""
        with self._tx() as ex:
            self._ensure_patient(ex, patient, start_us)
            ex("INSERT INTO sessions (session_id, patient, start_us, state, devices_json) VALUES (?, ?, ?, 'open', ?) "
               "ON CONFLICT (session_id) DO NOTHING", (session_id, patient, start_us, json.dumps(devices, sort_keys=True)))
            for table in ("raw_batches", "raw_session_ranges"):
                ex(f"UPDATE {table} SET session_id = ? WHERE session_id = ?", (session_id, implicit_id))  # noqa: S608 - table names are ours
            ex("DELETE FROM live_strides WHERE session_id = ?", (implicit_id,))
            ex("DELETE FROM sessions WHERE session_id = ? AND state = 'open'", (implicit_id,))

    def close_session(self, session_id: str, end_us: int, reason: str) -> bool:
        """Close an open session; True when it was open."""
        with self._tx() as ex:
            cur = ex(
                "UPDATE sessions SET state = 'closed', end_us = ?, close_reason = ? WHERE session_id = ? AND state = 'open'",
                (end_us, reason, session_id),
            )
            return cur.rowcount == 1

    def record_session_stop(self, session_id: str, time_us: int, reason: str, ends: dict[str, int]) -> None:
        """Keep a session's stop message: its time, reason and how far each device's data goes (``ends``: one
        past the device's last sequence number). A replayed stop keeps the first."""
        with self._tx() as ex:
            ex("INSERT INTO session_stops (session_id, time_us, reason) VALUES (?, ?, ?) "
               "ON CONFLICT (session_id) DO NOTHING", (session_id, time_us, reason))
            for device_id, end_seq in sorted(ends.items()):
                ex("INSERT INTO session_stop_ends (session_id, device_id, end_seq) VALUES (?, ?, ?) "
                   "ON CONFLICT (session_id, device_id) DO NOTHING", (session_id, device_id, end_seq))

    def session_stop(self, session_id: str) -> SessionStop | None:
        """The session's recorded stop (None when none was recorded)."""
        rows = self._rows("SELECT time_us, reason FROM session_stops WHERE session_id = ?", (session_id,))
        if not rows:
            return None
        ends = self._rows("SELECT device_id, end_seq FROM session_stop_ends WHERE session_id = ?", (session_id,))
        return SessionStop(int(rows[0][0]), str(rows[0][1]), {str(d): int(e) for d, e in ends})

    def session_device_ends(self, session_id: str) -> dict[str, int]:
        """Per device, one past the highest sequence number stored in the session."""
        return {str(d): int(e) for d, e in self._rows(
            "SELECT device_id, end_seq FROM raw_session_ranges WHERE session_id = ?", (session_id,))}

    def stopped_session_holding(self, patient: str, device_id: str, first_seq: int) -> SessionRow | None:
        """The patient's session whose recorded stop says the device's data went past ``first_seq`` and whose stored
        frames of the device start at or before it: where a batch that arrived after the stop belongs (None: none).
        Of several, the one whose data ends first (a device's sequence numbers only grow from session to session)."""
        rows = self._rows(
            "SELECT s.session_id, s.patient, s.start_us, s.state FROM session_stop_ends e "
            "JOIN sessions s ON s.session_id = e.session_id "
            "LEFT JOIN raw_session_ranges r ON r.session_id = e.session_id AND r.device_id = e.device_id "
            "WHERE e.device_id = ? AND e.end_seq > ? AND (r.first_seq IS NULL OR r.first_seq <= ?) AND s.patient = ? "
            "ORDER BY e.end_seq LIMIT 1", (device_id, first_seq, first_seq, patient))
        return _session_row(rows[0]) if rows else None

    def session(self, session_id: str) -> SessionRow | None:
        """The session (None when there is none of that id)."""
        rows = self._rows("SELECT session_id, patient, start_us, state FROM sessions WHERE session_id = ?", (session_id,))
        return _session_row(rows[0]) if rows else None

    def open_sessions(self) -> list[SessionRow]:
        """Every session still open."""
        return [_session_row(r) for r in self._rows(
            "SELECT session_id, patient, start_us, state FROM sessions WHERE state = 'open'")]

    def save_session_results(self, session_id: str, patient: str, day: str, strides: pd.DataFrame, summary: dict) -> None:
        """Replace the session's strides and summary (idempotent)."""
        rows = [
            (session_id, r["side"], float(r["heel_strike_s"]), patient, day, json.dumps(jsonable(r)))
            for r in strides.to_dict("records")
        ]
        with self._tx() as ex:
            ex("DELETE FROM strides WHERE session_id = ?", (session_id,))
            for row in rows:
                ex("INSERT INTO strides (session_id, side, heel_strike_s, patient, day, metrics_json) "
                   "VALUES (?, ?, ?, ?, ?, ?)", row)
            ex(
                "INSERT INTO session_summaries (session_id, patient, day, strides_n, summary_json) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET patient = excluded.patient, day = excluded.day, "
                "strides_n = excluded.strides_n, summary_json = excluded.summary_json",
                (session_id, patient, day, len(rows), json.dumps(jsonable(summary), sort_keys=True)),
            )

    def session_has_results(self, session_id: str) -> bool:
        """True when the session's final analysis is stored (a ``session_summaries`` row)."""
        return bool(self._rows("SELECT 1 FROM session_summaries WHERE session_id = ?", (session_id,)))

    def add_live_strides(self, rows: list[tuple]) -> None:
        """Provisional strides: rows of ``(session_id, side, heel_strike_s, patient, toe_off_s, next_heel_strike_s,
        stride_time_s, stance_time_s, swing_time_s, stored_us)``; a stride already stored is left as it is."""
        if not rows:
            return
        with self._tx():
            self._executemany(
                "INSERT INTO live_strides (session_id, side, heel_strike_s, patient, toe_off_s, next_heel_strike_s, "
                "stride_time_s, stance_time_s, swing_time_s, stored_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id, side, heel_strike_s) DO NOTHING", rows)

    def last_live_heel_strike_s(self, session_id: str, side: str) -> float | None:
        """The latest heel strike of the foot's stored live strides (None when it has none)."""
        rows = self._rows("SELECT MAX(heel_strike_s) FROM live_strides WHERE session_id = ? AND side = ?",
                          (session_id, side))
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def delete_live_strides(self, session_id: str) -> None:
        """Drop the session's provisional strides (its final analysis replaces them)."""
        with self._tx() as ex:
            ex("DELETE FROM live_strides WHERE session_id = ?", (session_id,))


def _session_row(row: tuple) -> SessionRow:
    session_id, patient, start_us, state = row
    return SessionRow(str(session_id), str(patient), int(start_us), str(state))
