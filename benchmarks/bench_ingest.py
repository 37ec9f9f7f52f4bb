"""Processing-service ingest throughput beside a bare paho subscriber, in one run.

    .venv/bin/python -m benchmarks.bench_ingest [--batches 20000] [--devices 40] [--repeat 1]

Starts a private Mosquitto on a free port (configured like deploy/mosquitto/mosquitto.conf:
no per-client queue limit), pre-loads it with the same QoS 1 batches for persistent sessions
of each consumer, and times how fast each drains its queue, so broker and publisher are out
of the measurement. The batches are what the collector sends: 50 frames x 16 channels + IMU
at 100 Hz of simulated walking (``simulator``), from ``--devices`` insoles (two per patient).

Consumers: (a) a bare paho subscriber in this process that only counts and acknowledges
(paho's defaults: the baseline), and the same with paho reading up to 512 waiting packets per
wake-up as the worker's client does (``transport.mqtt.make_client(read_burst_n=...)``); (b) one
``kinetic process`` worker (a separate OS process, SQLite), without and with live provisional strides;
(c) two ``kinetic process`` workers (``--worker 0/2`` and ``1/2``, two OS processes, one SQLite file each).
A worker process is started and subscribed first, then stopped (SIGSTOP) while the batches are published
and timed from SIGCONT until every batch is in its database, so its start-up is not measured.
Prints messages/s, samples/s, the ratio to the bare subscriber, and whether every frame was stored
exactly once (zero loss).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from insole_common import topics
from insole_common.codec import Batch, PressureUnit, encode_batch, peek_header, split_payloads
from processing.service import GROUP_COMMIT_N
from tests.fixtures.broker import publish_all
from transport.mqtt import MqttSettings, connect, make_client

FRAMES = 50
T0_US = 1_800_000_000_000_000


def start_broker(workdir: Path) -> tuple[subprocess.Popen, MqttSettings]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = workdir / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""  # mosquitto started as root would drop to "mosquitto"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{user}"
                    "max_queued_messages 0\nmax_inflight_messages 1000\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, MqttSettings(host="127.0.0.1", port=port)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("private mosquitto did not start")


def walking_batches(patient: str, side: str, seconds: float, *, seed: int, start_us: int = T0_US) -> list[Batch]:
    """One insole's batches of ``FRAMES`` frames of simulated walking, as the collector builds them."""
    from simulator import SimulationParams, simulate
    from simulator.device import ACC_SCALE_G, GYRO_SCALE_DPS, PRESSURE_SCALE_KPA, device_blocks

    sim = simulate(SimulationParams(schedule=(("standing", 2.0), ("walking", seconds)), imu=True), seed=seed)
    layout_id = sim.recording.feet[side].layout.wire_id
    return [Batch(
        device_id=f"{patient}-{side}", side=side, sample_rate_hz=b.sample_rate_hz, first_seq=b.first_seq,
        device_time_us=b.device_time_us, collector_time_us=start_us + int(b.first_seq * 1e6 / b.sample_rate_hz),
        pressure_raw=b.pressure_counts, layout_id=layout_id, pressure_unit=PressureUnit.KPA,
        pressure_scale=PRESSURE_SCALE_KPA, imu_raw=b.imu_counts, acc_scale_g=ACC_SCALE_G,
        gyro_scale_dps=GYRO_SCALE_DPS) for b in device_blocks(sim, side, frames_per_block=FRAMES)]


def make_messages(n_batches: int, n_devices: int) -> list[tuple[str, bytes]]:
    """``n_batches`` raw messages of simulated walking, round-robin over the insoles (as they arrive live)."""
    per_device = -(-n_batches // n_devices)
    streams = []
    for dev in range(n_devices):
        patient, side = f"bench{dev // 2:03d}", "LR"[dev % 2]
        batches = walking_batches(patient, side, per_device * FRAMES / 100.0, seed=dev // 2)[:per_device]
        streams.append([(topics.raw_topic(patient, side), encode_batch(b)) for b in batches])
    out = [s[k] for k in range(per_device) for s in streams if k < len(s)]
    return out[:n_batches]


def drain_bare(settings: MqttSettings, messages, *, read_burst_n: int = 1) -> float:
    cid = f"bare-{uuid.uuid4().hex[:6]}"
    got = [0]
    done = threading.Event()

    def on_message(c, _u, m):
        got[0] += 1
        c.ack(m.mid, m.qos)
        if got[0] == len(messages):
            done.set()

    def session(subscribe: bool):
        client = make_client(settings, client_id=cid, clean_session=False, read_burst_n=read_burst_n)
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
    t0, cpu0 = time.perf_counter(), time.process_time()
    client = session(subscribe=False)
    done.wait(600)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    client.disconnect()
    client.loop_stop()
    return got[0] / elapsed, cpu


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (a worker's live-analysis helper)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    return out


def start_worker(settings: MqttSettings, db: Path, *, worker: str, client_id: str, live: bool,
                 log_path: Path) -> subprocess.Popen:
    """A ``kinetic process`` worker process; returns once it is subscribed."""
    env = dict(os.environ, KINETIC_MQTT_URL=settings.url, PYTHONUNBUFFERED="1",
               KINETIC_MQTT_SESSION_PER_SUBSCRIPTION="1" if settings.session_per_subscription else "0")
    args = [sys.executable, "-m", "kinetic", "process", "--db", str(db), "--archive", str(db.parent / "archive"),
            "--worker", worker, "--client-id", client_id, "--inactivity-s", "3600"] + ([] if live else ["--no-live"])
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "ready:" in log_path.read_text():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"kinetic process did not become ready: {log_path.read_text()}")


def stored_batches_n(db: Path) -> int:
    """Batches stored so far, from the sessions' sequence ranges (a small table, cheap to poll; exact for these
    streams, which have no gaps; :func:`stored_frames` counts exactly at the end)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            frames = conn.execute("SELECT COALESCE(SUM(end_seq - first_seq), 0) FROM raw_session_ranges").fetchone()[0]
        except sqlite3.OperationalError:  # no schema yet
            return 0
    return int(frames) // FRAMES


def stored_frames(db: Path) -> tuple[int, int]:
    """(frames stored, distinct (device, seq) batch keys), from every stored payload's own header."""
    keys = set()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        frames = 0
        for device_id, n_frames, payload in conn.execute("SELECT device_id, n_frames, payload FROM raw_batches"):
            frames += n_frames
            keys.update((device_id, peek_header(p).first_seq) for p in split_payloads(payload))
    return frames, len(keys)


def drain_workers(settings: MqttSettings, messages, workdir: Path, n_workers: int,
                  *, live: bool) -> tuple[float, int, float, float, int]:
    """Messages/s of ``n_workers`` worker processes draining ``messages``; the frames they stored; the CPU
    seconds of the workers and of their helper processes (live analysis) during the drain; the live
    strides stored."""
    run = f"w{n_workers}{'live' if live else ''}-{uuid.uuid4().hex[:4]}"
    dbs = [workdir / run / f"worker{i}.sqlite" for i in range(n_workers)]
    dbs[0].parent.mkdir()
    procs = [start_worker(settings, db, worker=f"{i}/{n_workers}", client_id=f"{run}-{i}", live=live,
                          log_path=db.with_suffix(".log")) for i, db in enumerate(dbs)]
    try:
        for p in procs:
            p.send_signal(signal.SIGSTOP)  # connected and subscribed; the broker queues for it meanwhile
        publish_all(settings, messages)
        helpers = [c for p in procs for c in child_pids(p.pid)]
        cpu0 = [cpu_s(p.pid) for p in procs], [cpu_s(c) for c in helpers]
        t0 = time.perf_counter()
        for p in procs:
            p.send_signal(signal.SIGCONT)
        while sum(stored_batches_n(db) for db in dbs) < len(messages) and time.perf_counter() - t0 < 600:
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        worker_cpu = sum(cpu_s(p.pid) for p in procs) - sum(cpu0[0])
        helper_cpu = sum(cpu_s(c) for c in helpers) - sum(cpu0[1])
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
            p.terminate()
        for p in procs:
            p.wait(30)
    frames = sum(stored_frames(db)[0] for db in dbs)
    keys = sum(stored_frames(db)[1] for db in dbs)
    if keys != len(messages):
        frames = -1  # a batch missing or stored twice
    live_n = 0
    for db in dbs:  # (the workers have stopped: their helpers stored everything handed over first)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            live_n += conn.execute("SELECT COUNT(*) FROM live_strides").fetchone()[0]
    return sum(stored_batches_n(db) for db in dbs) / elapsed, frames, worker_cpu, helper_cpu, live_n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=20_000)
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=1, help="measure every consumer this many times, interleaved")
    args = ap.parse_args()
    messages = make_messages(args.batches, args.devices)
    with tempfile.TemporaryDirectory() as tmp:
        broker, settings = start_broker(Path(tmp))
        try:
            print(f"{len(messages)} batches of {FRAMES} frames x 16 channels + IMU (simulated walking) from "
                  f"{args.devices} insoles, QoS 1; worker = a `kinetic process` OS process with SQLite")
            ratios: dict[str, list[float]] = {}
            for _ in range(args.repeat):
                per_k = 1000 / len(messages)  # CPU seconds per 1,000 messages
                bare, cpu = drain_bare(settings, messages)
                print(f"{'bare paho subscriber':40s}: {bare:8.0f} msg/s {bare * FRAMES:10.0f} samples/s  (baseline); "
                      f"CPU {cpu * per_k * 1000:.0f} ms per 1,000 messages")
                burst, cpu = drain_bare(settings, messages, read_burst_n=GROUP_COMMIT_N)
                ratios.setdefault("bare, reading like the worker", []).append(burst / bare)
                print(f"{'bare, reading like the worker':40s}: {burst:8.0f} msg/s {burst * FRAMES:10.0f} samples/s  "
                      f"= {burst / bare:.2f}x bare; CPU {cpu * per_k * 1000:.0f} ms")
                for n, live in ((1, False), (1, True), (2, False)):
                    rate, frames, cpu, helper_cpu, live_n = drain_workers(settings, messages, Path(tmp), n, live=live)
                    lost = len(messages) * FRAMES - frames
                    what = f"kinetic process, {n} worker{'s' if n > 1 else ''}{', live strides' if live else ''}"
                    ratios.setdefault(what, []).append(rate / bare)
                    helper = (f" + {helper_cpu * per_k * 1000:.0f} ms in the live-analysis helper; "
                              f"{live_n} live strides stored") if live else ""
                    print(f"{what:40s}: {rate:8.0f} msg/s {rate * FRAMES:10.0f} samples/s  "
                          f"= {rate / bare:.2f}x bare, {'zero loss' if lost == 0 else f'LOST {lost} frames'}; "
                          f"CPU {cpu * per_k * 1000:.0f} ms{helper}")
            print(f"load average (1 min) of the machine at the end: {os.getloadavg()[0]:.2f}")
            if args.repeat > 1:
                for what, r in ratios.items():
                    print(f"{what:40s}: median {np.median(r):.2f}x bare over {len(r)} runs "
                          f"(range {min(r):.2f}-{max(r):.2f})")
        finally:
            broker.terminate()
            broker.wait(5)


if __name__ == "__main__":
    main()
