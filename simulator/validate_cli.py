"""``kinetic validate-detection``: detection quality on simulated cohorts and on replayed real control walks.

Arms (``--patients`` independent simulated patients each, see :mod:`simulator.cohort`):
``stable`` (no change, ``--stable-weeks`` monitored weeks after the baseline),
``shortened_stride`` (stride length -10 % from day 14) and ``lateral_shift``
(+0.05 foot widths from day 14); ``recovery`` (``--recovery-patients``: -10 % stride
from day 14 to day 24, then back) measures improved/cleared. The PhysioNet gaitpdb
control walks (GaCo*, JuCo*, SiCo*) are replayed as ``--replay-days`` days each.

Prints sensitivity within 7 days per change type, median days to flag, the false-flag
rate per stable patient-week (exact Clopper-Pearson 95 % intervals) and the replay
result; ``--json`` writes the same figures. Exit status 0 when every target is met
(sensitivity >= 95 %, false flags <= 5 % of stable patient-weeks, no replay flag), 1 if not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from insole_common.errors import ValidationError
from processing.detection import CompensationDetector, DetectionSettings
from processing.readers.auto import read_any
from simulator import validate19
from simulator.cohort import Change, make_cohort, replay_days, simulate_cohort

ONSET_DAY = 14
WITHIN_DAYS = 7
DEFAULT_GAITPDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet-gaitpdb"
CONTROL_PREFIXES = ("GaCo", "JuCo", "SiCo")


def register(subparsers) -> None:
    p = subparsers.add_parser("validate-detection", help="compensatory-gait detection on simulated cohorts + gaitpdb",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, default=200, help="simulated patients per arm (default 200)")
    p.add_argument("--stable-weeks", type=int, default=4, help="monitored weeks of each stable patient (default 4)")
    p.add_argument("--recovery-patients", type=int, default=40, help="patients in the recovery arm (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes for the simulation (default 1)")
    p.add_argument("--gaitpdb", default=str(DEFAULT_GAITPDB), help="folder with the PhysioNet gaitpdb walks ('' skips)")
    p.add_argument("--replay-days", type=int, default=35)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--suite", default="classic", choices=["classic", "issue19"],
                   help="classic: the arms above; issue19: the acceptance rules of docs/validation.md (issue 19) on "
                        "simulated cohorts (--patients per arm) and on the gaitpdb walks replayed through kinetic "
                        "import (--replicates per walk and arm)")
    p.add_argument("--replicates", type=int, default=1, help="issue19: replays of each gaitpdb walk per arm")
    p.add_argument("--detection-config", default=None,
                   help="TOML file with a [detection] table of detection settings (default: the file named by "
                        "KINETIC_DETECTION_CONFIG, else the validated defaults)")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------
def clopper_pearson(k: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval of k successes in n trials."""
    from scipy.stats import beta  # noqa: PLC0415 (heavy: scipy.stats takes ~0.8 s to import, needed only for this interval)

    if n == 0:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


def evaluate_patient(daily: pd.DataFrame, change, *, n_days: int, detector=None) -> dict:
    """Detection outcome of one simulated patient against its ground truth ``change``."""
    det = (detector or CompensationDetector()).detect(daily)
    out = {"baseline_complete": det.baseline_complete_, "flags": [(e.kind, e.state, e.day, e.metric) for e in det.flags_]}
    if not det.baselines_:
        return dict(out, stable_weeks_n=0, false_weeks_n=0, days_to_flag=None)
    base_end = max(int(b.end_day) for b in det.baselines_.values())
    stable_end = min(change.onset_day, n_days) if change.kind != "none" else n_days
    raised = [e for e in det.flags_ if e.state == "raised"]
    weeks = [(base_end + 1 + 7 * j, base_end + 8 + 7 * j) for j in range(n_days // 7 + 1)
             if base_end + 8 + 7 * j <= stable_end]
    false_weeks = [w for w in weeks if any(w[0] <= e.day < w[1] for e in raised)]
    out.update(stable_weeks_n=len(weeks), false_weeks_n=len(false_weeks),
               false_raises=[(e.kind, e.day, e.metric) for e in raised if e.day < stable_end])
    if change.kind != "none":
        hits = [e for e in raised if e.kind == change.kind and e.day >= change.onset_day]
        first = min((e.day for e in hits), default=None)
        out["days_to_flag"] = None if first is None else first - change.onset_day + 1
        out["cross_kind"] = sorted({e.kind for e in raised if e.kind != change.kind and e.day >= change.onset_day})
        persisting_end = change.end_day if change.end_day is not None else n_days
        out["improved_while_changed_n"] = sum(
            e.kind == change.kind and e.state == "improved" and change.onset_day <= e.day < persisting_end
            for e in det.flags_)
        if change.end_day is not None:
            back = [e for e in det.flags_ if e.kind == change.kind and e.day >= change.end_day]
            out["days_to_improved"] = min((e.day - change.end_day + 1 for e in back if e.state == "improved"),
                                          default=None)
            out["days_to_cleared"] = min((e.day - change.end_day + 1 for e in back if e.state == "cleared"),
                                         default=None)
    return out


def replay_gaitpdb(folder: Path, *, n_days: int, seed: int, settings: DetectionSettings | None = None) -> list[dict]:
    files = sorted(f for f in folder.glob("*.txt") if f.name.startswith(CONTROL_PREFIXES))
    out = []
    for i, f in enumerate(files):
        daily = replay_days(read_any(f), n_days=n_days, seed=seed + i)
        det = CompensationDetector(settings).detect(daily)
        out.append({"record": f.stem, "days_n": int(len(daily)),
                    "valid_days_n": int((daily["strides_n"] >= det.settings.min_strides_n).sum()),
                    "monitored": sorted(det.baselines_), "raised_n": sum(e.state == "raised" for e in det.flags_),
                    "flags": [(e.kind, e.state, e.day, e.metric) for e in det.flags_]})
    return out


def validate(*, patients: int, stable_weeks: int = 4, recovery_patients: int = 40, seed: int = 0, workers: int = 1,
             gaitpdb: str | Path | None = DEFAULT_GAITPDB, replay_days_n: int = 35,
             settings: DetectionSettings | None = None) -> dict:
    """Run the cohorts and the replay with ``settings`` (default: the defaults); returns the figures as a dict."""
    t0 = time.time()
    detector = CompensationDetector(settings)
    # the baseline takes baseline_days valid days (10 % of days are not walked: about 1.1 x that in calendar days)
    stable_days = detector.settings.baseline_days + 3 + 7 * stable_weeks
    change_days = ONSET_DAY + 14
    arms = {"stable": (Change(), stable_days),
            "shortened_stride": (Change(kind="shortened_stride", magnitude=0.10, onset_day=ONSET_DAY), change_days),
            "lateral_shift": (Change(kind="lateral_shift", magnitude=0.05, onset_day=ONSET_DAY), change_days)}
    cohort = make_cohort(arms, n_patients=patients, seed=seed)
    if recovery_patients:
        cohort += make_cohort({"recovery": (Change(kind="shortened_stride", magnitude=0.10, onset_day=ONSET_DAY,
                                                   end_day=ONSET_DAY + 10), ONSET_DAY + 24)},
                              n_patients=recovery_patients, seed=seed + 1)
    dailies = simulate_cohort(cohort, workers=workers)
    results = [dict(evaluate_patient(d, p.change, n_days=p.n_days, detector=detector), arm=p.arm,
                    patient=p.profile.patient)
               for p, d in zip(cohort, dailies, strict=True)]
    frame = pd.DataFrame(results)
    figures: dict = {"patients_per_arm": patients, "seed": seed, "walks_n": int(sum(len(d) for d in dailies))}
    for arm in ("shortened_stride", "lateral_shift"):
        sub = frame[frame.arm == arm]
        d2f = sub["days_to_flag"].dropna().astype(int)
        hit = int((d2f <= WITHIN_DAYS).sum())
        lo, hi = clopper_pearson(hit, len(sub))
        figures[arm] = {"patients_n": int(len(sub)), "flagged_within_7_days_n": hit,
                        "sensitivity_7d": hit / len(sub), "ci95": [lo, hi],
                        "median_days_to_flag": float(np.median(d2f)) if len(d2f) else None,
                        "p90_days_to_flag": float(np.percentile(d2f, 90)) if len(d2f) else None,
                        "never_flagged_n": int(sub["days_to_flag"].isna().sum()),
                        "other_kind_flagged_n": int(sub["cross_kind"].map(bool).sum()),
                        "other_kinds": sorted({k for ks in sub["cross_kind"] for k in ks}),
                        "spurious_improved_n": int(sub["improved_while_changed_n"].sum())}
    weeks = int(frame["stable_weeks_n"].sum())
    false = int(frame["false_weeks_n"].sum())
    lo, hi = clopper_pearson(false, weeks)
    stable = frame[frame.arm == "stable"]
    figures["false_flags"] = {
        "stable_patient_weeks_n": weeks, "weeks_with_false_flag_n": false, "rate_per_week": false / weeks if weeks
        else None, "ci95": [lo, hi], "stable_patients_n": int(len(stable)),
        "stable_patients_with_any_flag_n": int((stable["false_weeks_n"] > 0).sum()),
        "false_raises_by_kind": pd.Series([k for rs in frame["false_raises"].dropna() for k, _, _ in rs],
                                          dtype=object).value_counts().to_dict()}
    if recovery_patients:
        rec = frame[frame.arm == "recovery"]
        figures["recovery"] = {
            "patients_n": int(len(rec)), "flagged_n": int(rec["days_to_flag"].notna().sum()),
            "improved_n": int(rec["days_to_improved"].notna().sum()),
            "cleared_n": int(rec["days_to_cleared"].notna().sum()),
            "median_days_to_improved": _median(rec["days_to_improved"]),
            "median_days_to_cleared": _median(rec["days_to_cleared"])}
    if gaitpdb:
        folder = Path(gaitpdb)
        if not folder.is_dir():
            raise ValidationError(f"gaitpdb folder {folder} not found", reason="bad_file")
        replay = replay_gaitpdb(folder, n_days=replay_days_n, seed=seed, settings=detector.settings)
        figures["gaitpdb_replay"] = {"records": replay, "records_n": len(replay),
                                     "raised_n": int(sum(r["raised_n"] for r in replay))}
    figures["elapsed_s"] = round(time.time() - t0, 1)
    figures["targets_met"] = bool(
        all(figures[a]["sensitivity_7d"] >= 0.95 for a in ("shortened_stride", "lateral_shift"))
        and (figures["false_flags"]["rate_per_week"] or 0.0) <= 0.05
        and (not gaitpdb or figures["gaitpdb_replay"]["raised_n"] == 0))
    return figures


def _median(s: pd.Series):
    s = s.dropna()
    return float(s.median()) if len(s) else None


def format_report(f: dict) -> str:
    lines = [f"simulated walks analysed: {f['walks_n']} ({f['patients_per_arm']} patients per arm, seed {f['seed']})"]
    for arm, label in (("shortened_stride", "10 % stride shortening"), ("lateral_shift", "+0.05 fw lateral COP shift")):
        a = f[arm]
        lines.append(f"{label:28s} flagged within 7 days: {a['flagged_within_7_days_n']}/{a['patients_n']} = "
                     f"{100 * a['sensitivity_7d']:.1f} % (95 % CI {100 * a['ci95'][0]:.1f}-{100 * a['ci95'][1]:.1f}); "
                     f"median {a['median_days_to_flag']} days, 90th pct {a['p90_days_to_flag']} days; "
                     f"never {a['never_flagged_n']}; other kinds flagged in {a['other_kind_flagged_n']} "
                     f"{a['other_kinds']}; 'improved' while still changed: {a['spurious_improved_n']}")
    ff = f["false_flags"]
    lines.append(f"false flags: {ff['weeks_with_false_flag_n']}/{ff['stable_patient_weeks_n']} stable patient-weeks = "
                 f"{100 * (ff['rate_per_week'] or 0):.2f} % (95 % CI {100 * ff['ci95'][0]:.2f}-"
                 f"{100 * ff['ci95'][1]:.2f}); stable patients with any flag: "
                 f"{ff['stable_patients_with_any_flag_n']}/{ff['stable_patients_n']}; by kind {ff['false_raises_by_kind']}")
    if "recovery" in f:
        r = f["recovery"]
        lines.append(f"recovery (-10 % stride for 10 days, then back): flagged {r['flagged_n']}/{r['patients_n']}, "
                     f"improved {r['improved_n']} (median {r['median_days_to_improved']} days after the return), "
                     f"cleared {r['cleared_n']} (median {r['median_days_to_cleared']} days)")
    if "gaitpdb_replay" in f:
        g = f["gaitpdb_replay"]
        lines.append(f"gaitpdb control walks replayed as days: {g['records_n']} records, raised flags: {g['raised_n']}")
        lines.extend(f"  {r['record']}: {r['valid_days_n']}/{r['days_n']} valid days, "
                     f"{len(r['monitored'])} series monitored, flags {r['flags']}" for r in g["records"])
    lines.append(f"targets met: {f['targets_met']}  ({f['elapsed_s']} s)")
    return "\n".join(lines)


def run_issue19(args: argparse.Namespace, settings: DetectionSettings) -> int:
    figures: dict = {"seed": args.seed}
    if args.patients:
        figures["simulated"] = validate19.simulated(args.patients, seed=args.seed, workers=args.workers,
                                                    settings=settings)
        print(validate19.format_report(f"simulated, {args.patients} patients per arm (kc16 with IMU)",
                                       figures["simulated"]), flush=True)
    if args.gaitpdb:
        figures["real"] = validate19.real(Path(args.gaitpdb), replicates=args.replicates, seed=args.seed,
                                          workers=args.workers)
        print(validate19.format_report(f"gaitpdb walks through kinetic import, {args.replicates} replicate(s)",
                                       figures["real"]))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    met = all(t["met"] for part in ("simulated", "real") if part in figures for t in figures[part]["targets"])
    return 0 if met else 1


def run(args: argparse.Namespace) -> int:
    try:
        settings = (DetectionSettings.from_toml(args.detection_config) if args.detection_config
                    else DetectionSettings.from_env())
        if args.suite == "issue19":
            return run_issue19(args, settings)
        figures = validate(patients=args.patients, stable_weeks=args.stable_weeks,
                           recovery_patients=args.recovery_patients, seed=args.seed, workers=args.workers,
                           gaitpdb=args.gaitpdb or None, replay_days_n=args.replay_days, settings=settings)
    except ValidationError as exc:
        print(f"kinetic validate-detection: {exc} ({exc.reason})", file=sys.stderr)
        return 2
    print(format_report(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0 if figures["targets_met"] else 1
