"""Every SQL statement on the ``calibrations`` table (migration 9): a patient's walk-ratio calibration.

* ``save_calibration(store, patient, walk_ratio_m_per_spm, source, detail, *, updated_us)``: stores (replaces)
  the patient's calibration; ``detail`` is a JSON-ready dict (distance, steps, cadence of the walk, or height).
* ``calibration(store, patient) -> dict | None``: ``{"walk_ratio_m_per_spm", "source", "detail", "updated_us"}``
  or None when the patient has none.
"""

from __future__ import annotations

import json

from storage.base import StoreBase
from storage.rows import first_row


def save_calibration(store: StoreBase, patient: str, walk_ratio_m_per_spm: float, source: str, detail: dict, *,
                     updated_us: int) -> None:
    with store.transaction():
        store.execute("DELETE FROM calibrations WHERE patient = ?", (patient,))
        store.execute("INSERT INTO calibrations (patient, walk_ratio_m_per_spm, source, detail_json, updated_us) "
                      "VALUES (?, ?, ?, ?, ?)",
                      (patient, float(walk_ratio_m_per_spm), source, json.dumps(detail, sort_keys=True),
                       int(updated_us)))


def calibration(store: StoreBase, patient: str) -> dict | None:
    r = first_row(store, "SELECT walk_ratio_m_per_spm, source, detail_json, updated_us FROM calibrations "
                  "WHERE patient = ?", (patient,))
    if r is None:
        return None
    return {"walk_ratio_m_per_spm": float(r["walk_ratio_m_per_spm"]), "source": str(r["source"]),
            "detail": json.loads(r["detail_json"]), "updated_us": int(r["updated_us"])}
