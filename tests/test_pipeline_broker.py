"""Collector -> real Mosquitto -> processing -> real SQLite, with synthetic device frames.

Checks the transport guarantees independently of the simulator and the analytics:
every frame stored exactly once (gaps stay gaps), duplicates dropped, malformed
payloads rejected with a reason while the good data around them is kept.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from collector.service import Collector, CollectorConfig
from collector.sources.base import DeviceFrames, InsoleSource
from insole_common import topics
from insole_common.codec import PressureUnit, decode_batch
from processing.service import ProcessingService
from storage.archive import RawArchive, archive_metadata
from storage.store import SQLiteStore
from tests.helpers import running_service, wait_for
from transport.mqtt import connect, make_client

pytestmark = pytest.mark.services


class FramesSource(InsoleSource):
    def __init__(self, side: str, device_id: str, frames: list[DeviceFrames]) -> None:
        super().__init__()
        self.side, self.device_id, self._frames = side, device_id, frames

    async def frames(self):
        self.status.connected = True
        for f in self._frames:
            yield f
            await asyncio.sleep(0)
        self.status.connected = False


def synthetic_frames(side: str, device_id: str, n_notifications: int, *, per: int = 5, skip: set[int] = frozenset(),
                     seed: int = 0) -> list[DeviceFrames]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_notifications):
        if k in skip:
            continue
        out.append(DeviceFrames(
            side=side, device_id=device_id, first_seq=1000 + k * per, device_time_us=(1000 + k * per) * 10_000,
            arrival_time_us=1_800_000_000_000_000 + (k * per + per) * 10_000 + 9_000,
            pressure_raw=rng.integers(0, 3000, (per, 16)).astype(np.uint16), sample_rate_hz=100.0, layout_id=1,
            pressure_unit=PressureUnit.KPA, pressure_scale=0.1,
            imu_raw=rng.integers(-3000, 3000, (per, 6)).astype(np.int16), acc_scale_g=1 / 4096, gyro_scale_dps=0.07,
        ))
    return out


@pytest.fixture
def service(tmp_path, mqtt_settings):
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), analyze_on_close=False,
                            archive=RawArchive(tmp_path / "archive"))
    with running_service(svc, mqtt_settings, name="test-proc"):
        yield svc


def stored_seqs(store: SQLiteStore, device_id: str) -> list[int]:
    rows = store.query("SELECT first_seq, n_frames FROM raw_batches WHERE device_id = ? ORDER BY first_seq", (device_id,))
    return [s for r in rows.itertuples() for s in range(r.first_seq, r.first_seq + r.n_frames)]


def test_every_frame_exactly_once_and_gaps_kept(tmp_path, mqtt_settings, patient_id, service) -> None:
    left = synthetic_frames("L", f"{patient_id}-L", 200, skip={37, 38, 120})
    right = synthetic_frames("R", f"{patient_id}-R", 200, seed=1)
    sent = {f"{patient_id}-L": left, f"{patient_id}-R": right}
    collector = Collector(
        CollectorConfig(patient=patient_id, outbox_path=tmp_path / "outbox.sqlite"),
        [FramesSource("L", f"{patient_id}-L", left), FramesSource("R", f"{patient_id}-R", right)],
        mqtt_settings,
    )
    asyncio.run(collector.run())
    assert wait_for(lambda: service.stats.sessions_closed_n == 1)
    for device_id, frames in sent.items():
        expected = [f.first_seq + i for f in frames for i in range(f.n_frames)]
        assert stored_seqs(service.store, device_id) == expected
    # the stored pressures are the sent ones, bit for bit
    session_id = collector_session(service.store, patient_id)
    stored = {b.first_seq: b for b in service.store.session_batches(session_id) if b.side == "L"}
    first = left[0]
    np.testing.assert_array_equal(stored[first.first_seq].pressure_raw[: first.n_frames], first.pressure_raw)
    assert service.stats.rejected_n == 0
    # the raw archive holds the same frames, once, with physical units and metadata
    archived = service.archive.read(patient=patient_id)
    for device_id, frames in sent.items():
        expected = [f.first_seq + i for f in frames for i in range(f.n_frames)]
        assert archived.loc[archived["device_id"] == device_id, "seq"].tolist() == expected
    left_rows = archived[archived["device_id"] == f"{patient_id}-L"].set_index("seq")
    np.testing.assert_allclose(left_rows.loc[first.first_seq, ["p01_kpa", "p02_kpa"]].to_numpy(float),
                               first.pressure_raw[0, :2] * np.float32(0.1), rtol=1e-6)
    assert archived.loc[archived["device_id"] == f"{patient_id}-L", "acc_x_g"].notna().all()
    path = next(service.archive.root.rglob("*_L.parquet"))
    meta = archive_metadata(path)
    assert meta["kinetic.sample_rate_hz"] == "100.0" and meta["kinetic.layout"] == "kc16"
    assert meta["kinetic.pressure_unit"] == "kPa"
    # finishing the session again (a redelivered stop) rewrites identical files
    before = path.read_bytes()
    service.finish_session(collector_session(service.store, patient_id))
    assert len(service.archive.read(patient=patient_id)) == len(archived) and path.read_bytes() == before


def collector_session(store: SQLiteStore, patient: str) -> str:
    return str(store.query("SELECT session_id FROM sessions WHERE patient = ?", (patient,)).iloc[0]["session_id"])


def test_duplicates_dropped_and_bad_payloads_rejected_without_losing_good_data(tmp_path, mqtt_settings, patient_id,
                                                                               service) -> None:
    frames = synthetic_frames("L", f"{patient_id}-L", 40)
    collector = Collector(CollectorConfig(patient=patient_id, outbox_path=tmp_path / "o.sqlite"),
                          [FramesSource("L", f"{patient_id}-L", frames)], mqtt_settings)
    # capture what the collector published, then replay it interleaved with garbage
    outbox_rows = []
    orig_put = collector.outbox.put

    def spy(topic, payload, **kw):
        outbox_rows.append((topic, payload))
        return orig_put(topic, payload, **kw)

    collector.outbox.put = spy
    asyncio.run(collector.run())
    assert wait_for(lambda: service.stats.sessions_closed_n == 1)
    before = stored_seqs(service.store, f"{patient_id}-L")
    raw = [(t, p) for t, p in outbox_rows if "/raw/" in t]
    assert len(before) == 200 and len(raw) == 4

    client = make_client(mqtt_settings)
    connect(client, mqtt_settings)
    garbage = [b"", b"KC", raw[0][1][:-1], raw[0][1][:40] + b"\xff" + raw[0][1][41:], b"\x00" * 100]
    infos = []
    for (topic, payload), junk in zip(raw * 2, garbage * 2, strict=False):
        infos.append(client.publish(topic, junk, qos=1))
        infos.append(client.publish(topic, payload, qos=1))  # a redelivered duplicate
    infos.append(client.publish(topics.raw_topic(patient_id, "R"), raw[0][1], qos=1))  # left batch on the right topic
    for info in infos:
        info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    assert wait_for(lambda: service.stats.rejected_n == 9)
    assert wait_for(lambda: service.stats.frames_duplicate_n == 8 * 50)
    assert stored_seqs(service.store, f"{patient_id}-L") == before
    reasons = service.store.query("SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason")
    got = dict(zip(reasons["reason"], reasons["n"], strict=False))
    assert got == {"truncated": 6, "bad_checksum": 1, "bad_magic": 1, "inconsistent_message": 1}
    # the stored payloads still decode to the originals
    assert all(decode_batch(p).n_frames == 50 for _, p in raw)


def test_a_device_counter_restarting_in_the_next_session_loses_nothing(tmp_path, mqtt_settings, patient_id, service) -> None:
    """Each run of a device starts its counter afresh (a 16-bit counter unwrapped per run, a reboot):
    the collector continues the numbering after the previous run, so (device, seq) never repeats."""
    device = f"{patient_id}-L"
    clock = [1_800_000_000_000_000]
    for run in range(2):
        frames = [replace(f, arrival_time_us=f.arrival_time_us + run * 60_000_000)  # a minute later ...
                  for f in synthetic_frames("L", device, 30, seed=run)]  # ... with identical sequence numbers
        collector = Collector(CollectorConfig(patient=patient_id, outbox_path=tmp_path / "outbox.sqlite"),
                              [FramesSource("L", device, frames)], mqtt_settings, clock_us=lambda: clock[0])
        asyncio.run(collector.run(session_id=f"run-{run}"))
        clock[0] += 60_000_000  # the next run starts a minute later
    assert wait_for(lambda: service.stats.sessions_closed_n == 2)
    seqs = stored_seqs(service.store, device)
    assert len(seqs) == 2 * 30 * 5 and len(set(seqs)) == len(seqs)
    assert service.stats.frames_duplicate_n == 0
    # the second run continues after the first, one minute (6000 frames at 100 Hz) later
    first_run_end = 1000 + 30 * 5 - 1
    assert min(s for s in seqs if s > first_run_end) == first_run_end + 1 + 6000
