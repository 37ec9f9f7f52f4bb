"""Research export speed and memory: a 1-hour bilateral session to Parquet, CSV and BIDS-Motion.

Run: ``.venv/bin/python -m benchmarks.bench_export`` (``--hours 8 --memory`` adds the
peak-memory check of an 8-hour session, about a minute more).

Input: one session in the raw archive's own format (tests.fixtures.research), 100 Hz, 16 pressure
channels + IMU per foot. Baseline, measured in the same run: reading both archive files
into memory (``pyarrow.parquet.read_table``), i.e. what any export must at least do. Each
export is timed end to end (``write_export``: read, de-identify, write, rename into place),
best of ``--repeat``. ``--memory`` runs ``kinetic export`` as a child process and reports
its peak resident memory (``VmHWM``) beside the raw data size.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow.parquet as pq

from research.deid import Subject
from research.export import ExportSession, write_export
from research.samples import archive_streams
from storage.archive import RawArchive
from tests.fixtures.research import peak_memory_mb, write_archive_session

START_US = 1_790_000_000_000_000


def _session(paths) -> ExportSession:
    import pandas as pd

    return ExportSession(subject=Subject("Sbench000", "bench", -36_526), label="Rbench0000000",
                         streams=lambda: archive_streams(paths, START_US), strides=pd.DataFrame,
                         start=Subject("Sbench000", "bench", -36_526).shift_time_us(START_US))


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hours", type=float, default=8.0, help="session length for --memory (default %(default)s)")
    ap.add_argument("--memory", action="store_true", help="also measure peak memory of an export of --hours")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        archive = RawArchive(tmp / "archive")
        t0 = time.perf_counter()
        paths = write_archive_session(archive, hours=1.0, start_us=START_US)
        rows = sum(pq.read_metadata(p).num_rows for p in paths.values())
        size_mb = sum(p.stat().st_size for p in paths.values()) / 1e6
        print(f"input: 1 h bilateral, {rows:,} frames, archive {size_mb:.1f} MB "
              f"(made in {time.perf_counter() - t0:.1f} s)")
        base = best_of(lambda: [pq.read_table(p) for p in paths.values()], args.repeat)
        print(f"{'baseline: read the archive files':<42} {base:7.3f} s   1.00x")
        for fmt in ("parquet", "csv", "bids"):
            out = tmp / f"out-{fmt}"

            def run(fmt=fmt, out=out):
                write_export([_session(paths)], out, fmt, software="bench", overwrite=True, progress=False)
            secs = best_of(run, args.repeat)
            note = "  (target <= 1 s)" if fmt == "parquet" else ""
            print(f"{'export 1 h to ' + fmt:<42} {secs:7.3f} s   {secs / base:5.2f}x baseline, "
                  f"{3600 / secs:,.0f}x real time{note}")
        if args.memory:
            big = RawArchive(tmp / "big")
            t0 = time.perf_counter()
            big_paths = write_archive_session(big, hours=args.hours, patient="p", session_id="s", start_us=START_US)
            raw_mb = sum(pq.read_metadata(p).num_rows for p in big_paths.values()) * (8 + 8 + 22 * 4) / 1e6
            print(f"input: {args.hours:g} h bilateral ({raw_mb:,.0f} MB as arrays), "
                  f"made in {time.perf_counter() - t0:.0f} s")
            db = tmp / "mem.sqlite"
            _prepare_db(db, big, args.hours)
            baseline_mb = peak_memory_mb(["export", "--help"])
            print(f"{'peak memory: kinetic export --help':<42} {baseline_mb:7.0f} MB  (interpreter + imports)")
            for fmt in ("parquet", "bids"):
                t0 = time.perf_counter()
                mb = peak_memory_mb(["export", "--db", str(db), "--archive", str(big.root), "--session", "s",
                                  "--format", fmt, "--out", str(tmp / f"mem-{fmt}"), "--no-progress"])
                print(f"{'peak memory: ' + f'{args.hours:g} h to ' + fmt:<42} {mb:7.0f} MB  "
                      f"({mb / raw_mb:.2f}x the raw arrays; target < 300 MB) in {time.perf_counter() - t0:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _prepare_db(db: Path, archive: RawArchive, hours: float) -> None:
    """A processing database that knows the archived session (as the service leaves it)."""
    from storage.store import SQLiteStore

    store = SQLiteStore(db)
    store.migrate()
    store.open_session("s", "p", START_US, {"L": "dev-L", "R": "dev-R"})
    store.close_session("s", START_US + int(hours * 3600e6), "stopped")
    store.close()


if __name__ == "__main__":
    sys.exit(main())
