"""Processing-service ingest throughput beside a bare paho subscriber, in one run.

    .venv/bin/python -m benchmarks.bench_ingest [--batches 20000] [--devices 40]

Starts a private Mosquitto on a free port (configured like deploy/mosquitto/mosquitto.conf:
no per-client queue limit), pre-loads it with the same QoS 1 batches (50 frames x 16
channels + IMU at 100 Hz) for persistent sessions of (a) a bare paho subscriber that only
counts and acknowledges, (b) one processing worker storing into SQLite, (c) two workers
splitting the topic partitions (one SQLite file each), and times how fast each drains the
queue. Broker and publisher are thus out of the measurement. The two workers run as threads
of this one process (sharing one GIL), so their figure understates two worker processes. The
last line adds provisional live strides (streaming analytics, 5 s chunks). Prints messages/s,
samples/s, the ratio to the bare subscriber, and whether every frame was stored exactly once.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch
from kinetic.mqtt import MqttSettings, connect, make_client
from processing.service import ProcessingService
from processing.store import SQLiteStore

FRAMES = 50


def start_broker(workdir: Path) -> tuple[subprocess.Popen, MqttSettings]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 0\nmax_inflight_messages 1000\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, MqttSettings(host="127.0.0.1", port=port)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("private mosquitto did not start")


def make_messages(n_batches: int, n_devices: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    pressure = rng.integers(0, 4000, (FRAMES, 16)).astype(np.uint16)
    imu = rng.integers(-3000, 3000, (FRAMES, 6)).astype(np.int16)
    out = []
    for k in range(n_batches):
        dev = k % n_devices
        patient, side = f"bench{dev // 2:03d}", "LR"[dev % 2]
        seq = (k // n_devices) * FRAMES
        payload = encode_batch(Batch(
            device_id=f"{patient}-{side}", side=side, sample_rate_hz=100.0, first_seq=seq, device_time_us=seq * 10_000,
            collector_time_us=1_800_000_000_000_000 + seq * 10_000, pressure_raw=pressure, layout_id=1,
            pressure_unit=PressureUnit.KPA, pressure_scale=0.1, imu_raw=imu, acc_scale_g=1 / 4096, gyro_scale_dps=0.07))
        out.append((topics.raw_topic(patient, side), payload))
    return out


def publish_all(settings: MqttSettings, messages) -> None:
    client = make_client(settings)
    client.max_inflight_messages_set(200)
    connect(client, settings)
    infos = [client.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def drain_bare(settings: MqttSettings, messages) -> float:
    cid = f"bare-{uuid.uuid4().hex[:6]}"
    got = [0]
    done = threading.Event()

    def on_message(c, _u, m):
        got[0] += 1
        c.ack(m.mid, m.qos)
        if got[0] == len(messages):
            done.set()

    def session(subscribe: bool):
        client = make_client(settings, client_id=cid, clean_session=False)
        client.manual_ack_set(True)
        client.on_message = on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        connect(client, settings)
        if subscribe:
            client.subscribe(topics.partition_filters("raw/+")[0], qos=1)
            subscribed.wait(5)
        return client

    first = session(subscribe=True)
    first.disconnect()
    first.loop_stop()
    publish_all(settings, messages)
    t0 = time.perf_counter()
    client = session(subscribe=False)
    done.wait(600)
    elapsed = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return got[0] / elapsed


def drain_workers(settings: MqttSettings, messages, workdir: Path, n_workers: int, *, live: bool) -> tuple[float, int]:
    ids = [f"drain{n_workers}-{i}-{uuid.uuid4().hex[:4]}" for i in range(n_workers)]
    services = [
        ProcessingService(SQLiteStore(workdir / f"{cid}.sqlite"), analyze_on_close=False, live_strides=live,
                          partitions=None if n_workers == 1 else topics.partitions_for_worker(i, n_workers))
        for i, cid in enumerate(ids)
    ]

    def start(svc, cid, stop):
        ready = threading.Event()
        t = threading.Thread(target=svc.run, args=(settings,), kwargs=dict(client_id=cid, stop=stop, ready=ready),
                             daemon=True)
        t.start()
        return t, ready

    for svc, cid in zip(services, ids):  # create the persistent sessions, then leave
        stop = threading.Event()
        t, ready = start(svc, cid, stop)
        ready.wait(10)
        stop.set()
        t.join(10)
    publish_all(settings, messages)
    stop = threading.Event()
    t0 = time.perf_counter()
    threads = [start(svc, cid, stop)[0] for svc, cid in zip(services, ids)]
    while sum(s.stats.batches_n for s in services) < len(messages) and time.perf_counter() - t0 < 600:
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(10)
    return sum(s.stats.batches_n for s in services) / elapsed, sum(s.stats.frames_accepted_n for s in services)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=20_000)
    ap.add_argument("--devices", type=int, default=40)
    args = ap.parse_args()
    messages = make_messages(args.batches, args.devices)
    with tempfile.TemporaryDirectory() as tmp:
        broker, settings = start_broker(Path(tmp))
        try:
            print(f"{len(messages)} batches of {FRAMES} frames x 16 channels + IMU from {args.devices} insoles, QoS 1")
            bare = drain_bare(settings, messages)
            print(f"{'bare paho subscriber':37s}: {bare:8.0f} msg/s {bare * FRAMES:10.0f} samples/s  (baseline)")
            for n, live in ((1, False), (2, False), (1, True)):
                rate, frames = drain_workers(settings, messages, Path(tmp), n, live=live)
                lost = len(messages) * FRAMES - frames
                what = f"processing, {n} worker{'s' if n > 1 else ' '}{', live strides' if live else ''}"
                print(f"{what:37s}: {rate:8.0f} msg/s {rate * FRAMES:10.0f} samples/s  "
                      f"= {rate / bare:.2f}x bare, {'zero loss' if lost == 0 else f'LOST {lost} frames'}")
        finally:
            broker.terminate()
            broker.wait(5)


if __name__ == "__main__":
    main()
