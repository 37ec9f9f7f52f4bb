"""Group commit under a trickle (through the real Mosquitto): messages that arrive one at a time, a millisecond
apart, are gathered for up to ``GROUP_WAIT_S`` into one transaction instead of one transaction each; a backlog
is never held back. Nothing is lost or stored twice either way."""

from __future__ import annotations

import time

import pytest

from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from insole_common.layouts import get_layout
from processing.service import GROUP_WAIT_S, ProcessingService
from simulator import SimulationParams, simulate
from simulator.device import ACC_SCALE_G, GYRO_SCALE_DPS, PRESSURE_SCALE_KPA, device_blocks
from storage.store import SQLiteStore
from tests.helpers import running_service, wait_for
from transport.mqtt import connect, make_client

pytestmark = pytest.mark.services
FRAMES, BATCHES_N = 10, 40


def batches(patient: str) -> list[bytes]:
    sim = simulate(SimulationParams(schedule=(("standing", 1.0), ("walking", 4.0)), imu=True), seed=1)
    out = []
    for k, block in enumerate(list(device_blocks(sim, "L", frames_per_block=FRAMES))[:BATCHES_N]):
        out.append(encode_batch(Batch(
            device_id=f"{patient}-L", side="L", sample_rate_hz=100.0, layout_id=get_layout("kc16").wire_id,
            pressure_unit=PressureUnit.KPA, pressure_scale=PRESSURE_SCALE_KPA, acc_scale_g=ACC_SCALE_G,
            gyro_scale_dps=GYRO_SCALE_DPS, first_seq=k * FRAMES, device_time_us=k * FRAMES * 10_000,
            collector_time_us=1_797_300_000_000_000 + k * FRAMES * 10_000, pressure_raw=block.pressure_counts,
            imu_raw=block.imu_counts)))
    return out


@pytest.mark.parametrize("wait_s", [GROUP_WAIT_S, 0.0])
def test_a_trickle_is_gathered_into_few_transactions(tmp_path, mqtt_settings, patient_id, wait_s):
    svc = ProcessingService(SQLiteStore(tmp_path / "kc.sqlite"), group_wait_s=wait_s, live_strides=False)
    publisher = make_client(mqtt_settings)
    connect(publisher, mqtt_settings)
    try:
        with running_service(svc, mqtt_settings):
            topic, infos = topics.raw_topic(patient_id, "L"), []
            started = time.perf_counter()
            for payload in batches(patient_id):
                infos.append(publisher.publish(topic, payload, qos=1))
                time.sleep(0.001)
            spread_s = time.perf_counter() - started
            for info in infos:
                info.wait_for_publish(10)
            assert wait_for(lambda: svc.stats.frames_accepted_n >= BATCHES_N * FRAMES, 20), svc.stats
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    assert svc.stats.frames_accepted_n == BATCHES_N * FRAMES and svc.stats.frames_duplicate_n == 0
    assert svc.stats.rejected_n == 0
    if wait_s > 0:  # 40 messages over ~50-100 ms: a handful of transactions, however the messages trickle in
        assert svc.stats.groups_n <= spread_s / wait_s + 4, (svc.stats.groups_n, spread_s)
    else:  # without the wait every group still commits whatever has arrived (a sanity bound, not a timing claim)
        assert 1 <= svc.stats.groups_n <= BATCHES_N + 2
