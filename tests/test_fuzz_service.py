"""100,000 fuzzed and mutated payloads to the running service over the real broker.

The publisher keeps its lead over the service below the stock Mosquitto's per-subscriber
queue (1000 messages), which would otherwise drop messages at the broker; deployments
raise ``max_queued_messages`` (deploy/mosquitto/mosquitto.conf).

No crash; every one rejected, counted and audited with its reason; the valid batches
interleaved with them are stored intact.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest

from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from processing.service import ProcessingService
from storage.store import SQLiteStore, split_raw_rows
from tests.helpers import running_service, wait_for
from transport.mqtt import connect, make_client

pytestmark = pytest.mark.services

FUZZ_N = int(os.environ.get("KINETIC_FUZZ_N", "100000"))


def valid_batch(device: str, first_seq: int, rng) -> bytes:
    return encode_batch(Batch(
        device_id=device, side="L", sample_rate_hz=100.0, first_seq=first_seq, device_time_us=first_seq * 10_000,
        collector_time_us=1_800_000_000_000_000 + first_seq * 10_000,
        pressure_raw=rng.integers(0, 4000, (50, 16)).astype(np.uint16), layout_id=1, pressure_unit=PressureUnit.KPA,
        pressure_scale=0.1, imu_raw=rng.integers(-2000, 2000, (50, 6)).astype(np.int16), acc_scale_g=1 / 4096,
        gyro_scale_dps=0.07,
    ))


def mutate(good: bytes, rng) -> bytes:
    """One malformed payload: every mutation below breaks the wire-format rules."""
    kind = rng.integers(0, 7)
    b = bytearray(good)
    if kind == 0:  # flip 1-8 random bits (CRC catches them)
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(0, len(b))
            b[i] ^= 1 << rng.integers(0, 8)
        return bytes(b) if bytes(b) != good else good[:-1]
    if kind == 1:  # truncate
        return good[: rng.integers(0, len(good))]
    if kind == 2:  # extend
        return good + rng.bytes(int(rng.integers(1, 64)))
    if kind == 3:  # random bytes
        return rng.bytes(int(rng.integers(0, 3000)))
    # a header field made invalid, CRC recomputed so the semantic check is what catches it
    field = [(2, b"\x07"), (3, b"\x02"), (4, b"\x02"), (7, b"\x09"), (6, b"\x00"), (12, b"\0\0\0\0"),
             (40, struct.pack("<f", float("nan"))), (40, struct.pack("<f", -1.0)), (11, b"\x01")]
    off, val = field[rng.integers(0, len(field))]
    b[off : off + len(val)] = val
    body = bytes(b[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def publish_fuzz(service, mqtt_settings, topic: str, good: list[bytes], rng) -> None:
    """FUZZ_N malformed payloads with the valid batches interleaved; waits until all are handled."""
    client = make_client(mqtt_settings)
    client.max_inflight_messages_set(1000)
    connect(client, mqtt_settings)
    every = FUZZ_N // len(good)
    infos = []
    sent_good = 0
    for i in range(FUZZ_N):
        infos.append(client.publish(topic, mutate(good[i % len(good)], rng), qos=1))
        if i % every == 0 and sent_good < len(good):
            infos.append(client.publish(topic, good[sent_good], qos=1))
            sent_good += 1
        if len(infos) >= 200:
            for info in infos:
                info.wait_for_publish(30)
            infos.clear()
            # stay under the stock broker's per-subscriber queue (max_queued_messages 1000):
            # beyond it Mosquitto drops QoS 1 messages for a slow subscriber
            sent_n = i + sent_good
            assert wait_for(lambda n=sent_n: n - service.stats.messages_n < 400, 30), service.stats
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
    assert sent_good == len(good)
    assert wait_for(lambda: service.stats.messages_n >= FUZZ_N + sent_good, 300), service.stats


def test_fuzzed_payloads_are_rejected_and_good_data_kept(tmp_path, mqtt_settings, patient_id) -> None:
    store = SQLiteStore(tmp_path / "kc.sqlite")
    service = ProcessingService(store, analyze_on_close=False)
    rng = np.random.default_rng(2026)
    good = [valid_batch(f"{patient_id}-L", 50 * k, rng) for k in range(200)]
    with running_service(service, mqtt_settings, name="test-fuzz"):
        publish_fuzz(service, mqtt_settings, topics.raw_topic(patient_id, "L"), good, rng)
    assert service.stats.rejected_n == FUZZ_N
    audit = store.query("SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason")
    assert audit["n"].sum() == FUZZ_N
    assert {"bad_checksum", "truncated", "inconsistent_lengths"} <= set(audit["reason"])
    assert not audit["reason"].isin(["", "error", "malformed"]).any()  # every rejection names its reason
    rows = split_raw_rows(store.query("SELECT first_seq, n_frames, payload FROM raw_batches ORDER BY first_seq"))
    assert rows["first_seq"].tolist() == [50 * k for k in range(200)]
    assert [bytes(p) for p in rows["payload"]] == good  # stored intact, byte for byte
