"""``kinetic simulate``: write a simulated recording and its ground truth."""

from __future__ import annotations

import argparse
import logging
import time

from insole_common.errors import ValidationError
from insole_common.layouts import LAYOUTS
from simulator import SimulationParams, simulate

log = logging.getLogger(__name__)


#: the walking-speed and heel-pain options: flag, default, help
HEEL_PAIN_OPTIONS = (
    ("--speed-factor", 1.0, ("walking speed relative to the usual one (0.5..1.5); cadence and stride length both scale "
                            "by its square root (walk ratio kept) (default 1)")),
    ("--heel-pain", 0.0, ("heel-pain compensation severity 0..1 on the affected side: slower, shorter strides, "
                         "shorter rearfoot contact, heel load down, lateral forefoot up, asymmetry (default 0: healthy)")),
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate a bilateral insole recording with ground truth",
        description=(
            "Simulate both insoles (pressure per sensor, optional IMU) through a mix of standing, walking, "
            "turning, shuffling and sitting. Writes the recording in the kinetic format to OUT and the ground "
            "truth to OUT/truth/ (events.csv: one row per stride; bouts.csv: activities; truth.json: "
            "injected parameters and device clocks)."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--duration-s", type=float, default=None,
                   help="length of the recording in seconds; the activity mix is drawn from the seed (default 180)")
    p.add_argument("--cadence-spm", type=float, default=105.0, help="walking cadence, steps per minute (default 105)")
    p.add_argument("--stride-length-m", type=float, default=1.30, help="walking stride length in metres (default 1.3)")
    p.add_argument("--body-mass-kg", type=float, default=70.0, help="body mass in kg (default 70)")
    p.add_argument("--lateral-shift-fw", type=float, default=0.0,
                   help="shift of the medial-lateral centre of pressure in every walking, turning and shuffling "
                        "stance, foot widths, lateral + (default 0)")
    p.add_argument("--heel-offload", type=float, default=0.0,
                   help="fraction (0..0.9) by which heel load is reduced in walking, turning and shuffling stances "
                        "and moved forward (default 0)")
    p.add_argument("--asymmetry", type=float, default=0.0,
                   help="limp as a symmetry index (0..0.4): the affected side has this much shorter stance and "
                        "lower force relative to the other side (default 0)")
    p.add_argument("--affected-side", choices=("L", "R"), default="R", help="limping / painful side (default R)")
    for flag, default, what in HEEL_PAIN_OPTIONS:
        p.add_argument(flag, type=float, default=default, help=what)
    p.add_argument("--heel-pain-bilateral", action="store_true", help="heel pain on both feet")
    p.add_argument("--variability-cv", type=float, default=0.02,
                   help="stride-to-stride coefficient of variation (default 0.02)")
    p.add_argument("--noise-kpa", type=float, default=1.0, help="sensor noise standard deviation, kPa (default 1)")
    p.add_argument("--packet-loss", type=float, default=0.0,
                   help="fraction of notification blocks lost per insole, in bursts (default 0)")
    p.add_argument("--clock-drift-ppm", type=float, default=0.0,
                   help="right insole clock rate relative to the left one, ppm (default 0)")
    p.add_argument("--clock-offset-s", type=float, default=0.0,
                   help="right insole clock minus left insole clock at the start, seconds (default 0)")
    p.add_argument("--no-imu", action="store_true", help="leave out accelerometer and gyroscope")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="kc16", help="sensor layout (default kc16)")
    p.add_argument("--sample-rate-hz", type=float, default=100.0, help="sample rate in Hz (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        params = SimulationParams(
            sample_rate_hz=args.sample_rate_hz, duration_s=args.duration_s, cadence_spm=args.cadence_spm,
            stride_length_m=args.stride_length_m, body_mass_kg=args.body_mass_kg,
            lateral_shift_fw=args.lateral_shift_fw, heel_offload_fraction=args.heel_offload,
            asymmetry=args.asymmetry, affected_side=args.affected_side, variability_cv=args.variability_cv,
            speed_factor=args.speed_factor, heel_pain=args.heel_pain, heel_pain_bilateral=args.heel_pain_bilateral,
            noise_kpa=args.noise_kpa, packet_loss_fraction=args.packet_loss, clock_drift_ppm=args.clock_drift_ppm,
            clock_offset_s=args.clock_offset_s, imu=not args.no_imu, layout=args.layout,
        )
    except ValidationError as exc:
        print(f"kinetic simulate: {exc}")
        return 2
    t0 = time.perf_counter()
    sim = simulate(params, seed=args.seed)
    out = sim.write(args.out)
    ev = sim.truth.events
    print(f"wrote {out} ({sim.recording.feet['L'].duration_s:.1f} s, {len(ev)} strides, "
          f"{len(sim.truth.bouts)} bouts) and {out / 'truth'} in {time.perf_counter() - t0:.1f} s")
    return 0
