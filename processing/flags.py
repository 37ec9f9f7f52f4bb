"""The patient's compensation flags and baselines, recomputed from the daily summaries and stored."""

from __future__ import annotations

import json
import logging

from insole_common.errors import InsoleError
from processing.detection import CompensationDetector, ReferencePeriod
from processing.summaries import daily_table
from storage.store import Store

log = logging.getLogger(__name__)


def update_flags(store: Store, patient: str, *, now_us: int) -> list:
    """Run compensation detection over all the patient's days; store baselines and flags.

    Recomputed from the daily summaries each time (idempotent under redelivery and restarts).
    The therapist's reference period, when one is stored (a ``baselines`` row with source
    ``therapist``), replaces the automatic baseline. Returns the flag events that are new
    since the last run; the caller publishes them on the alerts topic.
    """
    daily = daily_table(store, patient)
    ref = store.query("SELECT start_day, end_day, set_by FROM baselines WHERE patient = ? AND source = 'therapist' "
                      "ORDER BY updated_us DESC LIMIT 1", (patient,))
    reference = None if ref.empty else ReferencePeriod(ref["start_day"][0], ref["end_day"][0], ref["set_by"][0])
    try:
        det = CompensationDetector().detect(daily, reference=reference)
    except InsoleError as exc:  # e.g. not enough walking days yet
        log.info("no compensation detection for %s yet: %s", patient, exc)
        return []
    old = store.query("SELECT kind, metric, state, day, evidence_json, created_us FROM flags WHERE patient = ?",
                      (patient,))
    created = {(r.kind, r.metric, r.state, str(r.day), json.loads(r.evidence_json).get("direction")): int(r.created_us)
               for r in old.itertuples()}
    new_events = []
    with store.transaction():
        store.execute("DELETE FROM flags WHERE patient = ?", (patient,))
        for event in det.flags_:
            key = (event.kind, event.metric, event.state, str(event.day), event.evidence.get("direction"))
            if key not in created:
                new_events.append(event)
            row = event.to_row(patient, created_us=created.get(key, now_us))
            store.execute(f"INSERT INTO flags ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                          tuple(row.values()))
        if reference is None:
            store.execute("DELETE FROM baselines WHERE patient = ? AND source = 'auto'", (patient,))
        for baseline in det.baselines_.values():
            row = baseline.to_row(patient, updated_us=now_us)
            store.execute("DELETE FROM baselines WHERE patient = ? AND metric = ?", (patient, row["metric"]))
            store.execute(f"INSERT INTO baselines ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                          tuple(row.values()))
    return new_events
