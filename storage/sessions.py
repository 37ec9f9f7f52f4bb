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

    def close_session(self, session_id: str, end_us: int, reason: str) -> bool:
        """Close an open session; True when it was open."""
        with self._tx() as ex:
            cur = ex(
                "UPDATE sessions SET state = 'closed', end_us = ?, close_reason = ? WHERE session_id = ? AND state = 'open'",
                (end_us, reason, session_id),
            )
            return cur.rowcount == 1

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
