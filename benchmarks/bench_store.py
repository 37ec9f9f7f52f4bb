"""Raw-batch storage cost of both stores beside one row per batch with the same schema, in one run.

    .venv/bin/python -m benchmarks.bench_store [--batches 20000] [--devices 40] [--store both] [--repeat 3]

The processing service's hot path stores a group of up to 512 in-order batches per transaction
with ``Store.add_raw_payloads``, which merges each device's consecutive batches into one row of
``raw_batches`` (``storage.store.runs_of``). This times that call on the batches of
``benchmarks.bench_ingest`` (50 frames x 16 channels + IMU, ``--devices`` insoles interleaved as
they arrive), in groups of 512, on a fresh SQLite file and a fresh PostgreSQL schema
(``KINETIC_TEST_PG_DSN``). The baseline, measured on its own fresh store in the same round: the
same rows inserted one row per batch with one ``executemany`` per group into the same table (same
schema, settings and migrations), i.e. what the store did before runs. Prints microseconds per
stored batch (wall and this process's CPU), the ratio to the baseline, and the bytes stored (PostgreSQL: the
table with its TOAST data and index; SQLite: the database file's pages).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.bench_ingest import make_messages
from insole_common.codec import decode_batch
from processing.service import GROUP_COMMIT_N
from storage.store import PostgresStore, SQLiteStore

PG_DSN = os.environ.get("KINETIC_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
INSERT = ("INSERT INTO raw_batches (device_id, first_seq, n_frames, session_id, side, collector_time_us, payload) "
          "VALUES (?, ?, ?, ?, ?, ?, ?)")


def hot_path_rows(n_batches: int, n_devices: int) -> list[tuple]:
    """The rows the service's hot path hands to ``add_raw_payloads``, in arrival order."""
    rows = []
    for _topic, payload in make_messages(n_batches, n_devices):
        b = decode_batch(payload)
        rows.append((b.device_id, b.first_seq, b.n_frames, f"s-{b.device_id[:-2]}", b.side, b.collector_time_us, payload))
    return rows


def fresh_store(kind: str, workdir: Path):
    if kind == "sqlite":
        return SQLiteStore(workdir / f"{uuid.uuid4().hex[:8]}.sqlite")
    return PostgresStore(PG_DSN, schema=f"bench_{uuid.uuid4().hex[:10]}")


def drop(store) -> None:
    if isinstance(store, PostgresStore):
        store.execute(f'DROP SCHEMA "{store.schema}" CASCADE')
    store.close()


def table_bytes(store) -> int:
    if isinstance(store, PostgresStore):
        return int(store.query("SELECT pg_total_relation_size('raw_batches') AS b").iloc[0]["b"])
    return int(store.query("SELECT page_count * page_size AS b FROM pragma_page_count(), pragma_page_size()")
               .iloc[0]["b"])


def run(kind: str, rows: list[tuple], workdir: Path, *, per_batch: bool) -> tuple[float, float, int, int]:
    """(wall us, CPU us) per stored batch, rows in the table, table bytes."""
    store = fresh_store(kind, workdir)
    try:
        store.migrate()
        for session_id in sorted({r[3] for r in rows}):
            store.open_session(session_id, session_id, 0, {})
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(rows), GROUP_COMMIT_N):
            group = rows[i : i + GROUP_COMMIT_N]
            with store.transaction():
                if per_batch:  # the baseline: the store's own connection and transaction, one row per batch
                    store._executemany(INSERT, group)
                else:
                    store.add_raw_payloads(group)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stored_n = int(store.query("SELECT COUNT(*) AS n FROM raw_batches").iloc[0]["n"])
        frames = int(store.query("SELECT SUM(n_frames) AS f FROM raw_batches").iloc[0]["f"])
        if frames != sum(r[2] for r in rows):
            raise RuntimeError(f"{kind}: {frames} frames stored, {sum(r[2] for r in rows)} given")
        return wall / len(rows) * 1e6, cpu / len(rows) * 1e6, stored_n, table_bytes(store)
    finally:
        drop(store)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=20_000)
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=3, help="rounds, baseline and store interleaved")
    args = ap.parse_args()
    rows = hot_path_rows(args.batches, args.devices)
    payload_mb = sum(len(r[6]) for r in rows) / 1e6
    print(f"{len(rows)} batches of 50 frames x 16 channels + IMU from {args.devices} insoles "
          f"({payload_mb:.1f} MB of payloads), groups of {GROUP_COMMIT_N} per transaction")
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            ratios = []
            for _ in range(args.repeat):
                base = run(kind, rows, Path(tmp), per_batch=True)
                got = run(kind, rows, Path(tmp), per_batch=False)
                ratios.append(got[0] / base[0])
                for what, (wall, cpu, n, size) in (("one row per batch (baseline)", base), ("add_raw_payloads", got)):
                    print(f"{kind:8s} {what:30s}: {wall:6.1f} us per batch (CPU here {cpu:5.1f}); "
                          f"{n} rows, {size / 1e6:.1f} MB stored")
                print(f"{kind:8s} {'':30s}  = {got[0] / base[0]:.2f}x the baseline's time")
            print(f"{kind}: add_raw_payloads takes {statistics.median(ratios):.2f}x the time of one row per batch "
                  f"(median of {len(ratios)}, range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
