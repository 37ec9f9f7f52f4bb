"""Every SQL statement on the ``flags`` and ``baselines`` tables: what compensation detection stores and what
the dashboards read of it. Plain Python values out (dicts, lists); no formula here, only what is stored.

Reads (dashboards, therapist views):

* ``flags(store, patient, *, since=None) -> list[dict]``: every stored flag event of the patient, newest
  first (``day`` descending, then ``id`` descending); ``since`` keeps days ``>= since`` (``YYYY-MM-DD``).
  Keys: ``id, kind, metric, state, day, baseline, current, threshold, effect_size, days_n, evidence`` (the
  parsed ``evidence_json``: ``direction`` 'up'/'down', ``side``, ``days``, ``values``, ...), ``created_us``
  and the state columns of migration 8: ``active`` (bool), ``since_day``, ``cleared_day`` (str or None;
  meaningful on ``raised`` events, see below). NaN / infinite numbers come out as None.
* ``active_flags(store, patients=None) -> list[dict]``: every flag open now, one per flag (per patient and
  series), ordered by patient, ``since_day``, kind, metric. A flag is open from its first raise until a
  ``cleared`` event of the same series; ``improved`` does not close it, a relapse raise continues it.
  Keys: ``patient, kind, metric`` (with its side suffix, e.g. ``cop_ml_mean_fw_L``; the limp's symmetry
  index ``si_*`` has none: see ``side``), ``direction`` ('up'/'down'), ``side`` ('L', 'R' or None),
  ``since_day`` (first raise of the open flag), ``day`` (its latest raise), ``baseline, current, threshold,
  effect_size, days_n, evidence`` (of that latest raise), ``id``, ``created_us``. ``patients=None``: every patient.
* ``baselines(store, patient) -> dict[metric, dict]``: per monitored series (metric with side suffix, or
  ``si_*``) ``start_day, end_day, mean, sd`` (the detector's day-to-day SD), ``days_n, source`` ('auto' /
  'therapist'), ``set_by`` and, from migration 8, ``threshold`` (the detector's real-change threshold for
  one day, ``z_real_change * sd * sqrt(1 + 1/days_n)``), ``band_low`` / ``band_high`` (``mean -/+
  threshold``) and ``settings`` (the parsed detection settings that produced it; None for rows stored
  before migration 8, whose threshold and band are None too until detection runs again).
* ``reference_period(store, patient) -> dict | None``: the therapist's reference period, ``{"start_day",
  "end_day", "set_by"}`` of the newest ``baselines`` row with source 'therapist', or None.

* ``acknowledgements(store, patients) -> dict[(patient, series, since_day), list[dict]]``: the therapists'
  acknowledgements of flags (migration 9), newest first: ``author, time_us, note``.

Writes: ``acknowledge(store, patient, series, since_day, author, time_us, note)`` (the dashboards: a therapist
acknowledges the flag of ``series`` open since ``since_day``, with an optional note; kept when detection rewrites
the flags, since it names the flag by series and first raise), and (:func:`processing.flags.update_flags` only):

* ``save_detection(store, patient, flag_rows, baseline_rows, *, keep_auto_baselines)``: in one
  transaction, replaces every ``flags`` row of the patient by ``flag_rows`` and stores ``baseline_rows``
  (one per metric, replacing that metric's row); unless ``keep_auto_baselines``, the patient's 'auto'
  baselines are deleted first. Rows are dicts of column -> value (the ``to_row`` of the detector's events
  and baselines).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from storage.rows import first_row
from storage.store import Store

_FLAG_COLS = ("id", "kind", "metric", "state", "day", "baseline", "current", "threshold", "effect_size", "days_n",
              "evidence_json", "created_us", "active", "since_day", "cleared_day")
_BASELINE_COLS = ("metric", "start_day", "end_day", "mean", "sd", "days_n", "source", "set_by", "threshold",
                  "band_low", "band_high", "settings_json")


def _clean(x: Any) -> Any:
    """numpy -> Python, NaN / inf -> None (values go to JSON)."""
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _flag_dict(record: dict) -> dict:
    out = {k: _clean(v) for k, v in record.items() if k != "evidence_json"}
    out["evidence"] = json.loads(record.get("evidence_json") or "{}")
    out["active"] = bool(out.get("active"))
    return out


def flags(store: Store, patient: str, *, since: str | None = None) -> list[dict]:
    """The patient's flag events, newest first (module docstring)."""
    sql = f"SELECT {', '.join(_FLAG_COLS)} FROM flags WHERE patient = ?"  # noqa: S608 - constant columns; values are ? parameters
    params: tuple = (patient,)
    if since is not None:
        sql += " AND day >= ?"
        params += (since,)
    rows = store.query(sql + " ORDER BY day DESC, id DESC", params)
    return [_flag_dict(r) for r in rows.to_dict("records")]


def active_flags(store: Store, patients: list[str] | None = None) -> list[dict]:
    """The flags open now, of ``patients`` (None: all), one row per flag (module docstring)."""
    sql = ("SELECT patient, id, kind, metric, day, since_day, baseline, current, threshold, effect_size, days_n, "
           "evidence_json, created_us FROM flags WHERE active = 1 AND state = 'raised'")
    params: tuple = ()
    if patients is not None:
        if not patients:
            return []
        sql += f" AND patient IN ({', '.join('?' * len(patients))})"
        params = tuple(patients)
    rows = store.query(sql + " ORDER BY patient, since_day, kind, metric, id", params)
    out = []
    for r in rows.to_dict("records"):
        flag = _flag_dict(r)
        evidence = flag.pop("evidence")
        flag.pop("active", None)
        flag.update(direction=evidence.get("direction"), side=evidence.get("side"), evidence=evidence)
        out.append(flag)
    return out


def baselines(store: Store, patient: str) -> dict[str, dict]:
    """The stored baseline of every monitored series, with the detector's threshold and band (module docstring)."""
    sql = f"SELECT {', '.join(_BASELINE_COLS)} FROM baselines WHERE patient = ?"  # noqa: S608 - constant columns; ? parameters
    rows = store.query(sql, (patient,))
    out = {}
    for r in rows.to_dict("records"):
        metric, settings = str(r.pop("metric")), r.pop("settings_json")
        out[metric] = {**{k: _clean(v) for k, v in r.items()},
                       "settings": json.loads(settings) if isinstance(settings, str) else None}
    return out


def reference_period(store: Store, patient: str) -> dict | None:
    """The therapist's reference period of the patient, or None (module docstring)."""
    r = first_row(store, "SELECT start_day, end_day, set_by FROM baselines WHERE patient = ? AND source = 'therapist' "
                  "ORDER BY updated_us DESC LIMIT 1", (patient,))
    return None if r is None else {"start_day": r["start_day"], "end_day": r["end_day"], "set_by": _clean(r["set_by"])}


def _insert(execute, table: str, row: dict) -> None:
    # table: a literal of save_detection; columns: the keys of the detector's rows (code, not input); values: ? parameters
    sql = f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"  # noqa: S608 - see above
    execute(sql, tuple(row.values()))


def save_detection(store: Store, patient: str, flag_rows: Iterable[dict], baseline_rows: Iterable[dict], *,
                   keep_auto_baselines: bool) -> None:
    """Replace the patient's flags and store the baselines, in one transaction (module docstring)."""
    with store.transaction():
        store.execute("DELETE FROM flags WHERE patient = ?", (patient,))
        for row in flag_rows:
            _insert(store.execute, "flags", row)
        if not keep_auto_baselines:
            store.execute("DELETE FROM baselines WHERE patient = ? AND source = 'auto'", (patient,))
        for row in baseline_rows:
            store.execute("DELETE FROM baselines WHERE patient = ? AND metric = ?", (patient, row["metric"]))
            _insert(store.execute, "baselines", row)


def acknowledgements(store: Store, patients: list[str]) -> dict[tuple[str, str, str], list[dict]]:
    """The acknowledgements of the flags of ``patients``, per (patient, series, since_day), newest first."""
    if not patients:
        return {}
    rows = store.query("SELECT patient, series, since_day, author, time_us, note FROM flag_acknowledgements "  # noqa: S608 - ? placeholders only
                       f"WHERE patient IN ({', '.join('?' * len(patients))}) ORDER BY time_us DESC, id DESC",
                       tuple(patients))
    out: dict[tuple[str, str, str], list[dict]] = {}
    for patient, series, since_day, author, time_us, note in rows.itertuples(index=False, name=None):
        out.setdefault((str(patient), str(series), str(since_day)), []).append(
            {"author": str(author), "time_us": int(time_us), "note": str(note)})
    return out


def acknowledge(store: Store, patient: str, series: str, since_day: str, author: str, time_us: int,
                note: str = "") -> None:
    """Record that ``author`` acknowledged the flag of ``series`` open since ``since_day`` (module docstring)."""
    store.execute("INSERT INTO flag_acknowledgements (patient, series, since_day, author, time_us, note) "
                  "VALUES (?, ?, ?, ?, ?, ?)", (patient, series, since_day, author, time_us, note))
