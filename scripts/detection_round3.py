"""Issue 19, round 3 (docs/validation.md): cached daily tables and detector variants scored on them.

Detection does not feed back into the daily summaries, so the suite's daily tables are made once per source
and cached (a pickle, not committed), and every variant is scored on them with the suite's own
:func:`simulator.validate19.score` / :func:`simulator.validate19.summarise`:

* ``cache-sim``: the suite's simulated cohort (``--patients`` per arm, ``--seed``, exactly as
  :func:`simulator.validate19.simulated`) plus ``--extra-stable`` stable patients (``--extra-seed``, 42 days each,
  the same speed-day model), daily tables and arms;
* ``cache-real``: the gaitpdb walks through ``kinetic import`` exactly as :func:`simulator.validate19.real`,
  keeping each patient's daily table, walk-ratio calibration and the raises the service stored;
* ``score``: each named variant (``VARIANTS``) on both caches.

Run (from the repository root)::

    PYTHONPATH=. .venv/bin/python scripts/detection_round3.py cache-sim --out /tmp/r3_sim.pkl
    PYTHONPATH=. .venv/bin/python scripts/detection_round3.py cache-real --out /tmp/r3_real.pkl
    PYTHONPATH=. .venv/bin/python scripts/detection_round3.py score --sim /tmp/r3_sim.pkl --real /tmp/r3_real.pkl
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from processing.detection import CompensationDetector
from processing.flags import stored_walk_ratio
from processing.readers.auto import read_any
from processing.summaries import daily_table
from simulator import validate19 as V
from simulator.cohort import Change, make_cohort, simulate_cohort
from simulator.import_replay import FIRST_DAY, ReplayDays, replay_patient
from storage.store import SQLiteStore

GAITPDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet-gaitpdb"


# ---- caches ------------------------------------------------------------------------------------------------
def cache_sim(n_patients: int, seed: int, extra_stable: int, extra_seed: int, workers: int) -> list[dict]:
    arms = {}
    for arm, (kind, mag, _, _) in V.ARMS.items():
        for side in ("L", "R"):
            arms[f"{arm}:{side}"] = (Change(kind=kind, magnitude=mag, onset_day=V.ONSET, side=side), V.ONSET + V.WITHIN)
    arms["stable:L"] = (Change(), V.ONSET + V.WITHIN + 14)
    cohort = make_cohort(arms, n_patients=max(n_patients // 2, 1), seed=seed, speed_day_fraction=0.15)
    cohort = [p for p in cohort if p.arm != "stable:R"]  # the suite skips them (not scored)
    extra = make_cohort({"stable:L": (Change(), V.ONSET + V.WITHIN + 14)}, n_patients=extra_stable, seed=extra_seed,
                        speed_day_fraction=0.15) if extra_stable else []
    dailies = simulate_cohort(cohort + extra, workers=workers)
    out = []
    for i, (p, daily) in enumerate(zip(cohort + extra, dailies, strict=True)):
        arm, side = p.arm.split(":")
        out.append({"source": "sim" if i < len(cohort) else "sim_extra", "arm": arm, "side": side,
                    "n_days": p.n_days, "daily": daily, "walk_ratio": None, "patient": p.profile.patient})
    return out


def _real_one(job: tuple) -> dict:
    path, arm, side, seed, speed, days = job
    kind, mag, _, _ = V.ARMS[arm]
    patient = f"r-{arm}-{Path(path).stem}-{seed}"
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "replay.sqlite")
        store.migrate()
        out = replay_patient(store, read_any(path), patient=patient,
                             change=Change(kind=kind, magnitude=mag, onset_day=V.ONSET, side=side), seed=seed,
                             speed_m_s=speed, days=days)
        daily, wr = daily_table(store, patient), stored_walk_ratio(store, patient)
        store.close()
    return {"source": "real", "arm": arm, "side": side, "n_days": days.n_days, "daily": daily, "walk_ratio": wr,
            "record": Path(path).stem, "heel_share": out["heel_share"], "service_raised": out["raised"],
            "service_valid_days": out["valid_days"]}


def cache_real(folder: Path, replicates: int, seed: int, workers: int) -> list[dict]:
    """The jobs of :func:`simulator.validate19.real` (same order of random draws), each keeping its table."""
    files = sorted(f for f in folder.glob("*.txt") if V.WALK_NAME.match(f.stem))
    speeds = V.gaitpdb_speeds(folder)
    days = ReplayDays(n_days=V.ONSET + V.WITHIN)
    rng = np.random.default_rng(seed)
    jobs = [(str(f), arm, "LR"[int(rng.integers(2))], int(rng.integers(2 ** 31)), speeds.get(f.stem),
             days if arm != "stable" else ReplayDays(**{**days.__dict__, "n_days": days.n_days + 14}))
            for _ in range(replicates) for f in files for arm in V.ARMS]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_real_one, jobs))


# ---- scoring -----------------------------------------------------------------------------------------------
def day_index(day: Any) -> int:
    """Integer day of a simulated (int) or replayed (``YYYY-MM-DD``) day label."""
    if isinstance(day, str):
        from datetime import date  # noqa: PLC0415

        return (date.fromisoformat(day) - FIRST_DAY).days
    return int(day)


def outcome(rec: dict, detector: CompensationDetector) -> tuple[list[tuple], list[int], CompensationDetector]:
    det = detector.detect(rec["daily"], walk_ratio=rec["walk_ratio"])
    raised = sorted(((e.kind, day_index(e.day), e.metric, e.evidence.get("side")) for e in det.flags_
                     if e.state == "raised"), key=lambda r: r[1])
    valid = [day_index(d) for d, n in zip(rec["daily"].index, rec["daily"]["strides_n"], strict=True) if n >= 20]
    return raised, valid, det


def score_records(records: list[dict], detector: CompensationDetector) -> tuple[dict, list[dict]]:
    rows = []
    for rec in records:
        raised, valid, _ = outcome(rec, detector)
        row = V.score(raised, valid, rec["arm"], rec["side"], rec["n_days"])
        row.update(heel_share=rec.get("heel_share"), raised_all=raised, patient=rec.get("record", rec.get("patient")))
        rows.append(row)
    return V.summarise(rows), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("cache-sim")
    s.add_argument("--patients", type=int, default=20)
    s.add_argument("--seed", type=int, default=19)
    s.add_argument("--extra-stable", type=int, default=50)
    s.add_argument("--extra-seed", type=int, default=119)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--out", required=True)
    r = sub.add_parser("cache-real")
    r.add_argument("--gaitpdb", default=str(GAITPDB))
    r.add_argument("--replicates", type=int, default=1)
    r.add_argument("--seed", type=int, default=19)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "cache-sim":
        recs = cache_sim(args.patients, args.seed, args.extra_stable, args.extra_seed, args.workers)
    else:
        recs = cache_real(Path(args.gaitpdb), args.replicates, args.seed, args.workers)
    Path(args.out).write_bytes(pickle.dumps(recs))
    print(f"{len(recs)} patients cached in {args.out}")


if __name__ == "__main__":
    main()
