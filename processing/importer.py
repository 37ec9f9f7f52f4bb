"""Recordings into a patient's history, through the live service's own path (``kinetic import``).

:func:`import_recording` turns a recording (any format :mod:`processing.readers` reads) into what an insole
gateway would have sent: a session ``start`` message, the frames of each foot as wire-format batches
(:mod:`insole_common.codec`) on the patient's raw topics, and a session ``stop`` message. They go through
:meth:`processing.service.ProcessingService.handle`, the method the MQTT loop calls for every message, so the
session, the exactly-once raw store, the final analysis, the daily and weekly summaries and compensation
detection are exactly those of a live session. Nothing is published (no broker is involved).

* The session starts on ``day`` (the patient's time zone) at 08:00, after the day's sessions already stored.
* Its id is derived from the patient, the day and the recording's content, so importing the same recording
  for the same day twice stores it once (the second time is reported as already imported).
* Frames with a missing sample (NaN) are not sent, as a gateway would not have them; the service sees the gap.
* What the wire does not carry is not imported: a vendor's own centre of pressure or total force (Moticon
  exports), and the sensor layout of a recording whose layout has no wire id (then: layout "custom").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date

import numpy as np

from insole_common import topics
from insole_common.calendar import day_start_us
from insole_common.codec import MAX_FRAMES, Batch, PressureUnit, encode_batch, quantize
from insole_common.errors import ValidationError
from insole_common.layouts import LAYOUTS_BY_WIRE_ID
from insole_common.messages import SessionMessage
from insole_common.recording import FootRecording, Recording
from processing.service import ProcessingService
from storage import flags as flag_store, patients
from storage.dashboard import session_spans
from storage.store import Store
from storage.strides import session_strides

#: frames per batch (1 s at 100 Hz), as the collector sends them
FRAMES_PER_BATCH = 100
#: first imported session of a day starts at this hour; later ones follow with a minute's gap
DAY_START_HOUR = 8
_UNITS = {u.label: u for u in PressureUnit}
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class ImportResult:
    session_id: str
    day: str
    #: False when this recording was imported for this day before (nothing stored again)
    stored: bool
    strides_n: int
    frames_n: int
    #: flag events raised, improved or cleared by this import (kind, state, day, metric)
    new_flags: list[tuple[str, str, str, str]]


def check_day(day: str) -> str:
    """``day`` if it is a real calendar day ``YYYY-MM-DD``; ValidationError (reason ``bad_day``) otherwise."""
    try:
        if not _DAY_RE.match(day):
            raise ValueError("not YYYY-MM-DD")
        date.fromisoformat(day)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"day {day!r} is not a calendar day YYYY-MM-DD ({exc})", reason="bad_day") from exc
    return day


def check_patient_known(store: Store, patient: str) -> None:
    """ValidationError (reason ``unknown_patient``) when ``patient`` is not registered in ``store``."""
    topics.check_patient(patient)
    if not patients.patient_exists(store, patient):
        raise ValidationError(f"unknown patient {patient!r}: not registered in this database (kinetic provision "
                              f"patient --db ..., or pass --new-patient to register it)", reason="unknown_patient")


def import_recording(store: Store, recording: Recording, *, patient: str, day: str,
                     service: ProcessingService | None = None) -> ImportResult:
    """Store ``recording`` as one session of ``patient`` on ``day`` through the live service's path (module
    docstring). ``service``: a service over ``store`` to reuse across imports (default: a new one)."""
    check_day(day)
    topics.check_patient(patient)
    service = service or ProcessingService(store, live_strides=False)
    service.detection_clock = "data"
    before = {(f["kind"], f["state"], f["day"], f["metric"]) for f in flag_store.flags(store, patient)}
    digest = hashlib.sha1(usedforsecurity=False)
    for side, foot in sorted(recording.feet.items()):
        digest.update(side.encode() + np.ascontiguousarray(foot.pressure).tobytes())
    session_id = f"import-{patient}-{day}-{digest.hexdigest()[:12]}"
    if store.session(session_id) is not None:
        return ImportResult(session_id, day, False, 0, 0, [])
    start_us = _next_start_us(store, patient, day)
    devices = {side: f"{session_id}-{side}" for side in recording.feet}
    rejected_before = sum(service.stats.rejected.values())
    _send(service, SessionMessage(event="start", session_id=session_id, patient=patient, time_us=start_us,
                                  devices=devices))
    frames_n, end_us = 0, start_us
    for side, foot in sorted(recording.feet.items()):
        for batch in foot_batches(foot, device_id=devices[side], start_us=start_us):
            service.handle(topics.raw_topic(patient, side), encode_batch(batch), now_us=batch.collector_time_us)
            frames_n += batch.n_frames
            end_us = max(end_us, batch.collector_time_us + int(batch.n_frames * 1e6 / batch.sample_rate_hz))
    rejected = sum(service.stats.rejected.values()) - rejected_before
    _send(service, SessionMessage(event="stop", session_id=session_id, patient=patient, time_us=end_us,
                                  reason="imported"))
    if rejected or sum(service.stats.rejected.values()) - rejected_before:
        raise ValidationError(f"the service rejected {rejected} message(s) of the import (see the rejections table)",
                              reason="rejected")
    strides_n = len(session_strides(store, session_id))
    new = [k for k in ((f["kind"], f["state"], f["day"], f["metric"]) for f in flag_store.flags(store, patient))
           if k not in before]
    return ImportResult(session_id, day, True, strides_n, frames_n, sorted(new, key=lambda k: (k[2], k[0], k[3])))


def _send(service: ProcessingService, msg: SessionMessage) -> None:
    service.handle(topics.session_topic(msg.patient), msg.to_json(), now_us=msg.time_us)


def _next_start_us(store: Store, patient: str, day: str) -> int:
    """08:00 of ``day`` in the patient's time zone, or a minute after the day's last stored session."""
    start = day_start_us(day, store.patient_time_zone(patient))
    first = start + DAY_START_HOUR * 3_600_000_000
    ends = [begin if end is None else end for begin, end in session_spans(store, patient, start, start + 86_400_000_000)]
    return max([first, *(int(e) + 60_000_000 for e in ends)])


def foot_batches(foot: FootRecording, *, device_id: str, start_us: int) -> list[Batch]:
    """One foot's frames as wire-format batches of :data:`FRAMES_PER_BATCH` complete frames (NaN frames left out)."""
    unit = _UNITS.get(foot.pressure_unit)
    if unit is None:
        raise ValidationError(f"pressure unit {foot.pressure_unit!r} has no wire code", reason="unknown_format")
    p = np.asarray(foot.pressure, dtype=float)
    ok = np.isfinite(p).all(axis=1)
    imu = None
    if foot.acc_g is not None and foot.gyro_dps is not None:
        imu = np.hstack([foot.acc_g, foot.gyro_dps]).astype(float)
        ok &= np.isfinite(imu).all(axis=1)
    if not ok.any():
        raise ValidationError(f"{foot.side}: the recording has no complete frame", reason="no_data")
    lo = min(float(np.min(p[ok])), 0.0)
    scale = max(float(np.max(p[ok])) - lo, 1e-6) / 60_000.0  # u16 counts with headroom
    counts = quantize(p, scale, lo)
    acc_scale, gyro_scale = 16.0 / 32_000, 2000.0 / 32_000
    imu_counts = None if imu is None else np.hstack([quantize(imu[:, :3], acc_scale, dtype=np.int16),
                                                     quantize(imu[:, 3:], gyro_scale, dtype=np.int16)])
    layout_id = foot.layout.wire_id if foot.layout is not None and foot.layout.wire_id in LAYOUTS_BY_WIRE_ID else 0
    rate = float(foot.sample_rate_hz)
    out = []
    idx = np.flatnonzero(ok)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1)  # complete frames in runs without a gap
    for run in runs:
        for a in range(0, len(run), min(FRAMES_PER_BATCH, MAX_FRAMES)):
            i = run[a : a + FRAMES_PER_BATCH]
            t_us = start_us + int(round((foot.t0_s + i[0] / rate) * 1e6))
            out.append(Batch(device_id=device_id, side=foot.side, sample_rate_hz=rate, first_seq=int(i[0]),
                             device_time_us=max(t_us - start_us, 0), collector_time_us=t_us,
                             pressure_raw=counts[i], layout_id=layout_id, pressure_unit=unit, pressure_scale=scale,
                             pressure_offset=lo, imu_raw=None if imu_counts is None else imu_counts[i],
                             acc_scale_g=acc_scale if imu is not None else 0.0,
                             gyro_scale_dps=gyro_scale if imu is not None else 0.0))
    return out
