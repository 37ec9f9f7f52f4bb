"""Database unavailable -> the service buffers, retries, and loses nothing (real PostgreSQL outage)."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest

from collector.service import Collector, CollectorConfig
from processing.service import ProcessingService
from storage.store import PostgresStore
from tests.conftest import PG_DSN
from tests.helpers import running_service, wait_for
from tests.test_pipeline_broker import FramesSource, synthetic_frames

pytestmark = pytest.mark.services


@pytest.fixture
def pg_role():
    role = f"kc_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT CREATE ON DATABASE "{admin.info.dbname}" TO "{role}"')
        dbname = admin.info.dbname
    host_part = PG_DSN.split("@", 1)[1]
    yield role, f"postgresql://{role}@{host_part}", dbname
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'ALTER ROLE "{role}" LOGIN')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        admin.execute(f'DROP SCHEMA IF EXISTS "{role}" CASCADE')
        admin.execute(f'REVOKE CREATE ON DATABASE "{dbname}" FROM "{role}"')
        admin.execute(f'DROP ROLE "{role}"')


def set_outage(role: str, down: bool) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'ALTER ROLE "{role}" {"NOLOGIN" if down else "LOGIN"}')
        if down:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))


def test_database_outage_loses_nothing(mqtt_settings, patient_id, tmp_path, pg_role) -> None:
    role, dsn, _ = pg_role
    store = PostgresStore(dsn, schema=role)
    service = ProcessingService(store, analyze_on_close=False)
    frames = synthetic_frames("L", f"{patient_id}-L", 100)
    collector = Collector(CollectorConfig(patient=patient_id, outbox_path=tmp_path / "o.sqlite"),
                          [FramesSource("L", f"{patient_id}-L", frames)], mqtt_settings)
    with running_service(service, mqtt_settings, name="test-outage"):
        set_outage(role, down=True)
        asyncio.run(collector.run())  # everything reaches the broker while the database is down
        assert wait_for(lambda: service.stats.store_retries_n >= 2, 15)
        time.sleep(1.0)
        assert service.stats.sessions_closed_n == 0
        set_outage(role, down=False)
        assert wait_for(lambda: service.stats.sessions_closed_n == 1, 40)
    rows = store.query("SELECT first_seq, n_frames FROM raw_batches ORDER BY first_seq")
    stored = [s for r in rows.itertuples() for s in range(r.first_seq, r.first_seq + r.n_frames)]
    assert stored == [f.first_seq + i for f in frames for i in range(f.n_frames)]
    assert service.stats.rejected_n == 0
    store.close()
