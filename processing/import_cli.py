"""``kinetic import``, ``kinetic flags`` and ``kinetic calibrate``: recordings into a patient's history, the
patient's flags with their evidence, and the walk-ratio calibration (stride length without an IMU).

::

    kinetic import RECORDING... --patient P --day YYYY-MM-DD [--db FILE | --dsn URL] [--new-patient] [--json]
    kinetic flags --patient P [--active] [--since YYYY-MM-DD] [--json] [--db FILE | --dsn URL]
    kinetic calibrate RECORDING --distance-m 10 --patient P [--steps N] [--db FILE | --dsn URL]
    kinetic calibrate --height-m 1.72 --patient P

Exit status: 0 done; 2 bad input (a day that is not YYYY-MM-DD, a file of unknown format or unreadable, a
calibration out of range); 3 unknown patient (not registered in the database: ``kinetic provision patient``,
or ``kinetic import --new-patient``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from insole_common.errors import InsoleError, ValidationError
from processing.analytics import analyze
from processing.analytics.walk_ratio import WalkRatio
from processing.detection_settings import DetectionSettings
from processing.flags import save_walk_ratio, stored_walk_ratio
from processing.importer import check_day, check_patient_known, import_recording
from processing.readers.auto import FORMATS, read_any
from processing.service import ProcessingService
from storage import flags as flag_store, patients
from storage.open import open_store

EXIT_BAD_INPUT, EXIT_UNKNOWN_PATIENT = 2, 3


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help="SQLite database file (env KINETIC_DB; default kinetic.sqlite)")
    p.add_argument("--dsn", default=None, help="PostgreSQL URL instead (env KINETIC_DATABASE_URL)")
    p.add_argument("--pg-schema", default=None, help="PostgreSQL schema (default public)")
    p.add_argument("--patient", required=True, help="the patient's pseudonym")


def register(subparsers) -> None:
    doc = dict(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p = subparsers.add_parser("import", help="recordings into a patient's history as sessions of one day", **doc)
    p.add_argument("recordings", nargs="+", metavar="RECORDING", help="recording file(s); each becomes one session")
    _db_args(p)
    p.add_argument("--day", required=True, help="the day the recordings belong to, YYYY-MM-DD (patient's time zone)")
    p.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    p.add_argument("--new-patient", action="store_true", help="register the patient if the database lacks them")
    p.add_argument("--json", action="store_true", help="print one JSON object per recording")
    p.set_defaults(func=run_import)
    f = subparsers.add_parser("flags", help="a patient's compensation flags with their evidence", **doc)
    _db_args(f)
    f.add_argument("--active", action="store_true", help="only the flags open now")
    f.add_argument("--since", default=None, help="only events on or after this day (YYYY-MM-DD)")
    f.add_argument("--json", action="store_true", help="JSON (a list of flag events, evidence included)")
    f.set_defaults(func=run_flags)
    c = subparsers.add_parser("calibrate", help="a patient's walk ratio from a calibration walk (or the height)",
                              **doc)
    c.add_argument("recording", nargs="?", help="the calibration walk (straight, comfortable speed)")
    _db_args(c)
    c.add_argument("--distance-m", type=float, default=None, help="distance walked in the recording (e.g. 10)")
    c.add_argument("--steps", type=int, default=None, help="steps counted (default: heel strikes of both feet - 1)")
    c.add_argument("--height-m", type=float, default=None, help="instead of a walk: the patient's height in metres")
    c.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    c.set_defaults(func=run_calibrate)


def _fail(command: str, exc: InsoleError) -> int:
    reason = getattr(exc, "reason", "error")
    print(f"kinetic {command}: {exc} ({reason})", file=sys.stderr)
    return EXIT_UNKNOWN_PATIENT if reason == "unknown_patient" else EXIT_BAD_INPUT


def _store(args):
    return open_store(db=args.db, dsn=args.dsn, pg_schema=args.pg_schema)


def run_import(args: argparse.Namespace) -> int:
    try:
        check_day(args.day)
        recordings = [(path, read_any(path, args.format)) for path in args.recordings]  # all readable, or none stored
        store = _store(args)
        if args.new_patient:
            patients.register_patient(store, args.patient, time.time_ns() // 1000)
        check_patient_known(store, args.patient)
        service = ProcessingService(store, live_strides=False)
        for path, rec in recordings:
            r = import_recording(store, rec, patient=args.patient, day=args.day, service=service)
            if args.json:
                print(json.dumps({"recording": str(path), "session_id": r.session_id, "day": r.day, "stored": r.stored,
                                  "strides_n": r.strides_n, "frames_n": r.frames_n, "new_flags": r.new_flags}))
            else:
                what = f"{r.strides_n} strides" if r.stored else "already imported, nothing stored"
                flags = "; ".join(f"{k} {s} {m} on {d}" for k, s, d, m in r.new_flags) or "no new flag events"
                print(f"{path} -> {args.patient} {r.day} session {r.session_id}: {what}; {flags}")
    except InsoleError as exc:
        return _fail("import", exc)
    return 0


def _known(store, patient: str) -> None:
    if not patients.patient_exists(store, patient) and not flag_store.flags(store, patient):
        raise ValidationError(f"unknown patient {patient!r} in this database", reason="unknown_patient")


def run_flags(args: argparse.Namespace) -> int:
    try:
        if args.since is not None:
            check_day(args.since)
        store = _store(args)
        _known(store, args.patient)
        events = flag_store.flags(store, args.patient, since=args.since)
    except InsoleError as exc:
        return _fail("flags", exc)
    if args.active:
        events = [e for e in events if e["active"]]
    if args.json:
        print(json.dumps({"patient": args.patient, "flags": events}, indent=2, default=str))
        return 0
    if not events:
        print(f"{args.patient}: no flag events")
    for e in events:
        ev = e["evidence"]
        open_ = " (open)" if e["active"] else ""
        print(f"{e['day']} {e['state']:8s} {e['kind']:16s} {e['metric']:26s} {ev.get('direction', ''):4s} "
              f"baseline {e['baseline']:.4g} now {e['current']:.4g} effect {e['effect_size']:+.2f} SD "
              f"over {e['days_n']} days{open_}")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    try:
        if args.height_m is not None:
            if args.recording or args.distance_m:
                raise ValidationError("give either a recording with --distance-m or --height-m", reason="bad_usage")
            wr = WalkRatio.from_height(args.height_m)
        else:
            if not args.recording or args.distance_m is None:
                raise ValidationError("give a RECORDING and --distance-m (or --height-m)", reason="bad_usage")
            strides = analyze(read_any(args.recording, args.format)).strides
            wr = WalkRatio.from_walk(strides, distance_m=args.distance_m, steps_n=args.steps)
        store = _store(args)
        check_patient_known(store, args.patient)
        previous = stored_walk_ratio(store, args.patient)
        save_walk_ratio(store, args.patient, wr, now_us=time.time_ns() // 1000, settings=DetectionSettings.from_env())
    except InsoleError as exc:
        return _fail("calibrate", exc)
    was = "" if previous is None else f" (was {previous.m_per_spm:.5f}, {previous.source})"
    print(f"{args.patient}: walk ratio {wr.m_per_spm:.5f} m/(steps/min) from {wr.source} {wr.detail}{was}; "
          f"stride length at 100 steps/min: {float(wr.stride_length_m(100.0)):.2f} m")
    return 0
