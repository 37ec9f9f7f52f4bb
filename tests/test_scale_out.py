"""Two processing workers split the topic partitions and store exactly what one worker stores.

Through the real Mosquitto, into one shared PostgreSQL schema per run.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import psycopg
import pytest

from collector.service import Collector, CollectorConfig
from insole_common.topics import partition_of, partitions_for_worker
from processing.service import ProcessingService
from storage.store import PostgresStore, split_raw_rows
from tests.conftest import PG_DSN
from tests.helpers import wait_for
from tests.test_pipeline_broker import FramesSource, synthetic_frames

pytestmark = pytest.mark.services


def pick_patients(n_each: int) -> list[str]:
    """Pseudonyms with ``n_each`` in each of the two workers' partition sets."""
    worker0 = set(partitions_for_worker(0, 2))
    mine: dict[bool, list[str]] = {True: [], False: []}
    while min(len(v) for v in mine.values()) < n_each:
        p = f"t-{uuid.uuid4().hex[:10]}"
        bucket = mine[partition_of(p) in worker0]
        if len(bucket) < n_each:
            bucket.append(p)
    return mine[True] + mine[False]


def stream_all(patients: list[str], mqtt_settings, tmp_path, tag: str) -> None:
    for k, patient in enumerate(patients):
        sources = [FramesSource(side, f"{patient}-{side}", synthetic_frames(side, f"{patient}-{side}", 60, seed=k,
                                                                            skip={7} if side == "R" else set()))
                   for side in ("L", "R")]
        collector = Collector(CollectorConfig(patient=patient, outbox_path=tmp_path / f"{tag}-{patient}.sqlite"),
                              sources, mqtt_settings, clock_us=lambda: 1_800_000_000_000_000)
        asyncio.run(collector.run(session_id=f"s-{patient}"))


def run_workers(n_workers: int, patients, mqtt_settings, tmp_path, schema: str) -> dict:
    stores = [PostgresStore(PG_DSN, schema=schema) for _ in range(n_workers)]
    services, threads, stop = [], [], threading.Event()
    for i, store in enumerate(stores):
        svc = ProcessingService(store, analyze_on_close=False,
                                partitions=None if n_workers == 1 else partitions_for_worker(i, n_workers))
        ready = threading.Event()
        t = threading.Thread(target=svc.run, args=(mqtt_settings,), daemon=True,
                             kwargs=dict(client_id=f"test-w{i}-{uuid.uuid4().hex[:6]}", stop=stop, ready=ready, persistent=False))
        t.start()
        assert ready.wait(10)
        services.append(svc)
        threads.append(t)
    stream_all(patients, mqtt_settings, tmp_path, f"w{n_workers}")
    assert wait_for(lambda: sum(s.stats.sessions_closed_n for s in services) == len(patients), 30)
    stop.set()
    for t in threads:
        t.join(10)
    q = stores[0].query
    result = {
        "raw": split_raw_rows(q("SELECT device_id, first_seq, n_frames, side, collector_time_us, payload "
                                "FROM raw_batches ORDER BY device_id, first_seq")).to_dict("records"),
        "sessions": q("SELECT session_id, patient, start_us, state FROM sessions ORDER BY session_id").to_dict("records"),
        "per_worker_batches": [s.stats.batches_n for s in services],
    }
    for s in stores:
        s.close()
    return result


@pytest.fixture
def schemas():
    names = [f"t_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    yield names
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_two_workers_store_what_one_worker_stores(mqtt_settings, tmp_path, schemas) -> None:
    patients = pick_patients(2)
    one = run_workers(1, patients, mqtt_settings, tmp_path, schemas[0])
    two = run_workers(2, patients, mqtt_settings, tmp_path, schemas[1])
    assert len(one["raw"]) > 0
    assert two["raw"] == one["raw"]
    assert two["sessions"] == one["sessions"]
    # both workers did real work, and together they handled every batch exactly once
    assert all(n > 0 for n in two["per_worker_batches"])
    assert sum(two["per_worker_batches"]) == one["per_worker_batches"][0]
