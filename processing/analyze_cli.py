"""``kinetic analyze RECORDING --out DIR``: strides.csv and summary.json for one recording."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from insole_common.errors import ValidationError
from processing.analytics import OPENGO_EVENT_LEVELS, Calibration, LoadEventDetector, analyze
from processing.readers.auto import read_any

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="gait analysis of one recording -> DIR/strides.csv, DIR/summary.json",
                              description=__doc__)
    p.add_argument("recording", help="recording file or directory")
    p.add_argument("--format", default="auto", choices=["auto", "gaitpdb", "gaitndd", "moticon", "kinetic"])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--calibration-distance-m", type=float, default=None,
                   help="treat this recording as a calibration walk of this distance (stride length without IMU)")
    p.add_argument("--calibration-strides", type=float, default=None, help="strides counted in the calibration walk")
    p.add_argument("--event-levels", default="auto", choices=["auto", "contact", "opengo"],
                   help="load-insole event definition: contact (2 %% of the loaded level, about 20 N), opengo "
                        "(6 %% / 12 %%, as Moticon's OpenGo gait report marks heel strike / toe off), or auto "
                        "(default): opengo for recordings from Moticon OpenGo insoles, whose users compare with "
                        "that report, contact for every other recording")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        rec = read_any(args.recording, args.format)
        levels = getattr(args, "event_levels", "auto")
        if levels == "auto":
            levels = "opengo" if rec.source_format == "moticon" else "contact"
        detector = LoadEventDetector(**OPENGO_EVENT_LEVELS) if levels == "opengo" else None
        result = analyze(rec, detector=detector)
        if args.calibration_distance_m:
            cal = Calibration.from_walk(result.strides, distance_m=args.calibration_distance_m,
                                        n_strides=args.calibration_strides)
            result = analyze(rec, calibration=cal, detector=detector)
    except ValidationError as exc:
        print(f"kinetic analyze: {exc} ({exc.reason})", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.strides.to_csv(out / "strides.csv", index=False, float_format="%.6f")
    summary = dict(result.summary, recording=str(args.recording), format=rec.source_format, event_levels=levels,
                   bouts=json.loads(result.bouts.to_json(orient="records")))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False, default=str))
    print(f"{len(result.strides)} strides -> {out / 'strides.csv'}; flags: {', '.join(summary['flags']) or 'none'}")
    return 0
