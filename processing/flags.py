"""The patient's compensation flags and baselines, recomputed from the daily summaries and stored
(storage/flags.py holds the SQL; :func:`processing.detection_records.flag_status` decides which flags are open)."""

from __future__ import annotations

import logging

from insole_common.errors import InsoleError
from processing.analytics.walk_ratio import WalkRatio
from processing.detection import CompensationDetector, FlagEvent, ReferencePeriod
from processing.detection_settings import DetectionSettings
from processing.summaries import daily_table
from storage import calibrations, flags as flag_store
from storage.store import Store

log = logging.getLogger(__name__)


def _event_key(kind, metric, state, day, direction) -> tuple:
    """An event's identity across runs (its created_us is kept while it is stored)."""
    return kind, metric, state, str(day), direction


def update_flags(store: Store, patient: str, *, now_us: int, settings: DetectionSettings) -> list[FlagEvent]:
    """Run compensation detection over all the patient's days; store baselines and flags.

    Recomputed from the daily summaries each time (idempotent under redelivery and restarts), with
    ``settings`` (the deployment's, read once when the service starts:
    :attr:`processing.service.ProcessingService.detection_settings`), which each stored baseline records.
    The therapist's reference period, when one is stored (a ``baselines`` row with source ``therapist``),
    replaces the automatic baseline. The patient's walk-ratio calibration, when one is stored
    (``kinetic calibrate``), gives the stride length of insoles without an IMU. Each raised event is stored with
    its flag's state (``active``, ``since_day``, ``cleared_day``). Returns the flag events that are new since the
    last run; the caller publishes them on the alerts topic.
    """
    daily = daily_table(store, patient)
    ref = flag_store.reference_period(store, patient)
    reference = None if ref is None else ReferencePeriod(ref["start_day"], ref["end_day"], ref["set_by"])
    try:
        det = CompensationDetector(settings).detect(daily, reference=reference,
                                                    walk_ratio=stored_walk_ratio(store, patient))
    except InsoleError as exc:  # e.g. not enough walking days yet
        log.info("no compensation detection for %s yet: %s", patient, exc)
        return []
    created = {_event_key(f["kind"], f["metric"], f["state"], f["day"], f["evidence"].get("direction")):
               int(f["created_us"]) for f in flag_store.flags(store, patient)}
    new_events, flag_rows = [], []
    for event, status in zip(det.flags_, det.status_, strict=True):
        key = _event_key(event.kind, event.metric, event.state, event.day, event.evidence.get("direction"))
        if key not in created:
            new_events.append(event)
        flag_rows.append(event.to_row(patient, created_us=created.get(key, now_us), status=status))
    baseline_rows = [b.to_row(patient, updated_us=now_us) for b in det.baselines_.values()]
    flag_store.save_detection(store, patient, flag_rows, baseline_rows, keep_auto_baselines=reference is not None)
    return new_events


def stored_walk_ratio(store: Store, patient: str) -> WalkRatio | None:
    """The patient's stored walk-ratio calibration (storage/calibrations.py), or None."""
    cal = calibrations.calibration(store, patient)
    if cal is None:
        return None
    return WalkRatio(cal["walk_ratio_m_per_spm"], cal["source"], cal["detail"])


def save_walk_ratio(store: Store, patient: str, walk_ratio: WalkRatio, *, now_us: int,
                    settings: DetectionSettings) -> None:
    """Store the patient's walk-ratio calibration (replacing the previous one) and rerun detection with it and the
    deployment's ``settings``."""
    calibrations.save_calibration(store, patient, walk_ratio.m_per_spm, walk_ratio.source, walk_ratio.detail,
                                  updated_us=now_us)
    update_flags(store, patient, now_us=now_us, settings=settings)
