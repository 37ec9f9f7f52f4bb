"""Analytics throughput on 1 h of bilateral 16-channel + IMU data at 100 Hz.

Run: ``.venv/bin/python -m benchmarks.bench_analytics`` (or ``python benchmarks/bench_analytics.py``).
Prints, for the same run: time to load the arrays from .npy files (baseline), time of
``analyze`` (x real time, per core: single process), and peak traced memory of the analysis
relative to the raw data size. Times are the best of ``--repeat`` runs (default 3) for both the
baseline and the analysis, so a busy machine distorts the ratio less. BLAS is limited to one
thread (``OPENBLAS_NUM_THREADS=1`` unless set), so the figure is per core: the one BLAS call, a
16-channel weighted sum, would otherwise use a second core.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # per-core figure: before numpy loads OpenBLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insole_common.layouts import KC16
from insole_common.recording import FootRecording, Recording
from processing.analytics import analyze

FS = 100.0


def synth_foot(duration_s: float, phase_s: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = int(duration_s * FS)
    t = np.arange(n) / FS
    stride_s = 1.1 + 0.02 * np.sin(2 * np.pi * t / 60)
    # gait phase integrates the stride frequency (``(t / stride_s) % 1`` with a varying stride_s would jump and
    # leave the foot in the air for seconds at a time, which no real walk does)
    cycles = np.cumsum(1.0 / stride_s) / FS - phase_s / 1.1
    ph = cycles % 1.0 / 0.62
    st = np.clip(ph, 0, 1)
    load = np.where(ph < 1, np.sin(np.pi * st) * (1 - 0.3 * np.sin(2 * np.pi * st) ** 2), 0.0)
    ap = KC16.ap_array
    # heel-to-toe roll-over: weight channels by distance of their ap from the travelling COP
    w = np.exp(-((ap[None, :] - (0.1 + 0.8 * st)[:, None]) ** 2) / 0.05)
    pressure = (300.0 * load[:, None] * w + rng.normal(0, 0.5, (n, 16))).clip(0)
    acc = np.column_stack([0.3 * np.sin(2 * np.pi * t / 1.1), np.zeros(n), 1 + 0.2 * np.cos(2 * np.pi * t / 1.1)])
    gyr = np.column_stack([np.zeros(n), 200 * np.sin(2 * np.pi * t / 1.1) * (ph >= 1), 5 * np.ones(n)])
    return {"pressure": pressure, "acc": acc + rng.normal(0, 0.003, acc.shape),
            "gyr": gyr + rng.normal(0, 0.15, gyr.shape)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (load and analyze alike)")
    args = ap.parse_args()
    duration = args.hours * 3600
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        for side, phase in (("L", 0.0), ("R", 0.55)):
            for k, v in synth_foot(duration, phase, rng).items():
                np.save(os.path.join(d, f"{side}_{k}.npy"), v)
        load_runs = []
        for _ in range(args.repeat):  # best of N, for the baseline as for the analysis
            t0 = time.perf_counter()
            arrays = {(s, k): np.load(os.path.join(d, f"{s}_{k}.npy"))
                      for s in "LR" for k in ("pressure", "acc", "gyr")}
            load_runs.append(time.perf_counter() - t0)
    raw_bytes = sum(a.nbytes for a in arrays.values())
    rec = Recording(feet={s: FootRecording(s, FS, 0.0, arrays[(s, "pressure")], "kPa", layout=KC16,
                                           acc_g=arrays[(s, "acc")], gyro_dps=arrays[(s, "gyr")]) for s in "LR"},
                    source_format="bench")
    analyze_runs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = analyze(rec)
        analyze_runs.append(time.perf_counter() - t0)
    tracemalloc.start()
    analyze(rec)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"data: {args.hours:g} h bilateral, 16 channels + 6-axis IMU at {FS:g} Hz; "
          f"raw arrays {raw_bytes / 1e6:.1f} MB; "
          f"{len(res.strides)} strides")
    for label, load_s, analyze_s in (("first run", load_runs[0], analyze_runs[0]),
                                     (f"best of {args.repeat}", min(load_runs), min(analyze_runs))):
        print(f"{label}: load arrays (baseline) {load_s:.3f} s = {duration / load_s:,.0f} x real time; "
              f"analyze {analyze_s:.3f} s = {duration / analyze_s:,.0f} x real time (single core) = "
              f"{analyze_s / load_s:.1f} x the load time")
    print(f"peak traced memory during analyze: {peak / 1e6:.1f} MB = {peak / raw_bytes:.2f} x raw data")


if __name__ == "__main__":
    main()
