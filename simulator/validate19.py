"""``kinetic validate-detection --suite issue19``: the acceptance rules of docs/validation.md (issue 19), fixed
before measuring, on real gaitpdb walks replayed through ``kinetic import`` and on simulated cohorts.

Arms (change from day :data:`ONSET`, scored until ``ONSET + WITHIN``): ``stable`` (no change), ``lateral`` (one
foot, 10 % medial -> lateral load), ``heel`` (one foot, 20 % heel -> forefoot load), ``slower`` (speed x 0.92,
shorter strides), ``faster`` (speed x 1.08). Day-to-day variation includes slow and fast days in every arm.
"""

from __future__ import annotations

import re
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from processing.detection import CompensationDetector, DetectionSettings
from processing.readers.auto import read_any
from simulator.cohort import Change, ChangeKind, make_cohort, simulate_cohort
from simulator.import_replay import ReplayDays, replay_patient
from storage.store import SQLiteStore

ONSET, WITHIN, BASELINE_DAYS = 14, 14, 10
#: a gaitpdb walk's file name, e.g. GaCo17_01
WALK_NAME = re.compile(r"^[A-Z][a-z][A-Z][a-z]\d+_\d+$")
ONE_SIDED = ("lateral_shift", "heel_offloading", "limp")
#: arm -> (change kind, magnitude, the kinds that count as found, the kinds allowed after the onset)
ARMS: dict[str, tuple[ChangeKind, float, tuple[str, ...], tuple[str, ...]]] = {
    "stable": ("none", 0.0, (), ()),
    "lateral": ("lateral_transfer", 0.10, ("lateral_shift",), ("lateral_shift", "heel_offloading")),
    "heel": ("heel_transfer", 0.20, ("heel_offloading",), ("heel_offloading", "lateral_shift", "limp")),
    "slower": ("slower", 0.08, ("shortened_stride", "slowing"), ("shortened_stride", "slowing")),
    "faster": ("faster", 0.08, ("shortened_stride", "slowing"), ()),
}
#: the rules: (arm, figure, comparison, target)
TARGETS = (("stable", "false_week_rate", "<=", 0.02), ("lateral", "found_rate", ">=", 0.80),
           ("heel", "found_rate", ">=", 0.90), ("slower", "found_rate", ">=", 0.90),
           ("faster", "found_rate", "<=", 0.05), ("all", "wrong_rate", "<=", 0.05))


def score(raised: list[tuple], valid_days: list[int], arm: str, side: str, n_days: int) -> dict:
    """One patient against the rules: ``raised`` (kind, day, metric, side) flags, ``valid_days`` walked days."""
    _, _, found_kinds, allowed = ARMS[arm]
    base_end = valid_days[BASELINE_DAYS - 1] if len(valid_days) >= BASELINE_DAYS else n_days
    stable_end = n_days if arm == "stable" else ONSET
    weeks = [(base_end + 1 + 7 * j, base_end + 8 + 7 * j) for j in range(n_days // 7 + 1)
             if base_end + 8 + 7 * j <= stable_end]
    false_weeks = sum(any(a <= d < b for _, d, _, _ in raised) for a, b in weeks)
    after = [r for r in raised if ONSET <= r[1] < ONSET + WITHIN]
    one_sided = ARMS[arm][0] in ("lateral_transfer", "heel_transfer")

    def right(r) -> bool:
        return r[0] in found_kinds and (not one_sided or r[3] in (side, None))
    found = any(right(r) for r in after)
    wrong_kind = any(r[0] not in allowed for r in after)
    wrong_side = one_sided and any(r[0] in allowed and r[0] in ONE_SIDED and r[3] not in (side, None) for r in after) \
        and not found
    return {"arm": arm, "weeks_n": len(weeks), "false_weeks_n": int(false_weeks), "found": bool(found),
            "wrong": bool(wrong_kind or wrong_side), "raised_after": [r[:2] + r[3:] for r in after]}


def summarise(rows: list[dict]) -> dict:
    """Per arm: patients, found share, wrong share; the stable arm's false-flag rate per patient-week."""
    frame = pd.DataFrame(rows)
    out: dict = {}
    for arm, sub in frame.groupby("arm"):
        weeks = int(sub["weeks_n"].sum())
        out[arm] = {"patients_n": len(sub), "found_n": int(sub["found"].sum()), "found_rate": float(sub["found"].mean()),
                    "wrong_n": int(sub["wrong"].sum()), "weeks_n": weeks, "false_weeks_n": int(sub["false_weeks_n"].sum()),
                    "false_week_rate": float(sub["false_weeks_n"].sum() / weeks) if weeks else None}
        if "heel_share" in sub and arm == "heel" and sub["heel_share"].notna().any():
            med = sub["heel_share"].median()
            out[arm]["found_rate_low_heel_share"] = float(sub[sub["heel_share"] <= med]["found"].mean())
            out[arm]["found_rate_high_heel_share"] = float(sub[sub["heel_share"] > med]["found"].mean())
    changed = frame[frame["arm"] != "stable"]
    out["all"] = {"patients_n": len(changed), "wrong_n": int(changed["wrong"].sum()),
                  "wrong_rate": float(changed["wrong"].mean()) if len(changed) else None}
    out["targets"] = [{"arm": a, "figure": f, "rule": f"{op} {t}", "value": out.get(a, {}).get(f),
                       "met": out.get(a, {}).get(f) is not None and (out[a][f] <= t if op == "<=" else out[a][f] >= t)}
                      for a, f, op, t in TARGETS]
    return out


# ---- simulated cohorts -------------------------------------------------------------------------------------
def simulated(n_patients: int, *, seed: int, workers: int = 1, settings: DetectionSettings | None = None) -> dict:
    arms = {}
    for arm, (kind, mag, _, _) in ARMS.items():
        for side in ("L", "R"):
            arms[f"{arm}:{side}"] = (Change(kind=kind, magnitude=mag, onset_day=ONSET, side=side), ONSET + WITHIN)
    arms["stable:L"] = (Change(), ONSET + WITHIN + 14)  # stable patients: more monitored weeks
    cohort = make_cohort(arms, n_patients=max(n_patients // 2, 1), seed=seed, speed_day_fraction=0.15)
    dailies = simulate_cohort(cohort, workers=workers)
    detector = CompensationDetector(settings)
    rows = []
    for p, daily in zip(cohort, dailies, strict=True):
        arm, side = p.arm.split(":")
        if arm == "stable" and side == "R":
            continue
        det = detector.detect(daily)
        raised = [(e.kind, int(e.day), e.metric, e.evidence.get("side")) for e in det.flags_ if e.state == "raised"]
        valid = [int(d) for d, n in zip(daily.index, daily["strides_n"], strict=True) if n >= 20]
        rows.append(score(raised, valid, arm, side, p.n_days))
    return summarise(rows)


# ---- real walks through kinetic import ---------------------------------------------------------------------
def gaitpdb_speeds(folder: Path) -> dict[str, float]:
    """Walking speed of each walk, from the data folder's README table (m/s), where it gives one."""
    readme = folder / "README.md"
    out: dict[str, float] = {}
    if readme.is_file():
        for m in re.finditer(r"^\| (\w+)\.txt \|[^|]*\|[^|]*\|[^|]*\|[^|]*\| ([0-9.]+) \|", readme.read_text(), re.M):
            out[m.group(1)] = float(m.group(2))
    return out


def _real_one(job: tuple) -> dict:
    path, arm, side, seed, speed, days = job
    kind, mag, _, _ = ARMS[arm]
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "replay.sqlite")
        store.migrate()
        out = replay_patient(store, read_any(path), patient=f"r-{arm}-{Path(path).stem}-{seed}",
                             change=Change(kind=kind, magnitude=mag, onset_day=ONSET, side=side), seed=seed,
                             speed_m_s=speed, days=days)
        store.close()
    return dict(score(out["raised"], out["valid_days"], arm, side, days.n_days), heel_share=out["heel_share"],
                record=Path(path).stem)


def real(folder: Path, *, replicates: int = 1, seed: int = 0, workers: int = 1, records: list[str] | None = None,
         days: ReplayDays | None = None) -> dict:
    files = sorted(f for f in folder.glob("*.txt") if WALK_NAME.match(f.stem))  # not SHA256SUMS.txt, format.txt
    files = [f for f in files if records is None or f.stem in records]
    speeds = gaitpdb_speeds(folder)
    days = days or ReplayDays(n_days=ONSET + WITHIN)
    rng = np.random.default_rng(seed)
    jobs = [(str(f), arm, "LR"[int(rng.integers(2))], int(rng.integers(2 ** 31)), speeds.get(f.stem),
             days if arm != "stable" else ReplayDays(**{**days.__dict__, "n_days": days.n_days + 14}))
            for _ in range(replicates) for f in files for arm in ARMS]
    if workers <= 1:
        rows = [_real_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_real_one, jobs))
    out = summarise(rows)
    out["records"] = [f.stem for f in files]
    out["rows"] = rows
    return out


def format_report(name: str, s: dict) -> str:
    lines = [f"{name}:"]
    for arm in ARMS:
        a = s.get(arm)
        if a is None:
            continue
        extra = ""
        if "found_rate_low_heel_share" in a:
            extra = (f"; below / above the median heel share {100 * a['found_rate_low_heel_share']:.0f} % / "
                     f"{100 * a['found_rate_high_heel_share']:.0f} %")
        lines.append(f"  {arm:8s} {a['patients_n']:4d} patients: found {a['found_n']} ({100 * a['found_rate']:.1f} %), "
                     f"wrong kind/side {a['wrong_n']}; false-flag weeks {a['false_weeks_n']}/{a['weeks_n']}{extra}")
    lines.append(f"  wrong kind or side in {s['all']['wrong_n']}/{s['all']['patients_n']} changed patients")
    for t in s["targets"]:
        v = t["value"]
        lines.append(f"  rule {t['arm']} {t['figure']} {t['rule']}: {'-' if v is None else f'{100 * v:.1f} %'} "
                     f"{'MET' if t['met'] else 'NOT MET'}")
    return "\n".join(lines)
