"""Publish-to-stored latency of live strides with 500 simulated insoles at their real rate, in one run.

    .venv/bin/python -m benchmarks.bench_latency [--patients 250] [--seconds 60] [--poll-ms 10]

Starts a private Mosquitto (as benchmarks.bench_ingest) and one ``kinetic process`` worker (its own
OS process, SQLite, live strides on, as deployed). ``--patients`` simulated patients walk with a
left and a right insole each (``simulator``; 25 distinct simulated walks, each patient starting at
its own point of one of them); every insole's 50-frame batches are published with QoS 1 at the real
rate (100 Hz: one batch every 0.5 s per insole, each at the moment its last frame was sampled, the
insoles' phases spread over the half second), after a session start message per patient, as the
collector sends them. A reader polls the worker's database every ``--poll-ms`` (WAL: it sees
committed rows only) and notes when each raw batch and each provisional stride appears.

Reported, p50 / p95 / p99 / max:

* publish -> stride stored: from the publication of the batch that contains a stride's ending heel
  strike (its ``next_heel_strike_s``) to the stride's row being committed (target p99 <= 1.5 s);
* publish -> raw batch stored, the baseline: the same path without waiting for gait events.

Both include up to ``--poll-ms`` of polling delay. The publisher's own lateness against the real-time
schedule and the worker's CPU use are printed so that an overloaded machine shows.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import signal
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks.bench_ingest import FRAMES, child_pids, cpu_s, start_broker, start_worker
from insole_common import topics
from insole_common.codec import HEADER, Batch, PressureUnit, encode_batch, split_payloads
from insole_common.messages import SessionMessage
from transport.mqtt import MqttConnectError, MqttSettings, make_client

BATCH_S = FRAMES / 100.0
#: the real-time publisher wakes at most this often (s): batches are published up to this late
TICK_S = 0.002
WALKS_N = 25


def simulated_walks(n: int, seconds: float) -> list[dict[str, list]]:
    """``n`` simulated bilateral walks as device blocks of ``FRAMES`` frames per side."""
    from simulator import SimulationParams, simulate
    from simulator.device import device_blocks

    walks = []
    for seed in range(n):
        sim = simulate(SimulationParams(schedule=(("standing", 2.0), ("walking", seconds)), imu=True), seed=seed)
        walks.append({side: list(device_blocks(sim, side, frames_per_block=FRAMES)) for side in "LR"})
    return walks


class Insole:
    """One simulated insole's real-time stream: batch k is due at ``t0_s + (k + 1) * BATCH_S``."""

    def __init__(self, patient: str, side: str, blocks: list, start_block: int, t0_s: float) -> None:
        from insole_common.layouts import get_layout
        from simulator.device import ACC_SCALE_G, GYRO_SCALE_DPS, PRESSURE_SCALE_KPA

        self.patient, self.side, self.device_id = patient, side, f"{patient}-{side}"
        self.topic = topics.raw_topic(patient, side)
        self.blocks, self.start_block, self.t0_s = blocks, start_block, t0_s
        self._fixed = dict(device_id=self.device_id, side=side, sample_rate_hz=100.0,
                           layout_id=get_layout("kc16").wire_id,
                           pressure_unit=PressureUnit.KPA, pressure_scale=PRESSURE_SCALE_KPA, acc_scale_g=ACC_SCALE_G,
                           gyro_scale_dps=GYRO_SCALE_DPS)

    def due_s(self, k: int) -> float:
        return self.t0_s + (k + 1) * BATCH_S

    def payload(self, k: int) -> bytes:
        b = self.blocks[(self.start_block + k) % len(self.blocks)]
        return encode_batch(Batch(first_seq=k * FRAMES, device_time_us=k * FRAMES * 10_000,
                                  collector_time_us=int(round((self.t0_s + k * BATCH_S) * 1e6)),
                                  pressure_raw=b.pressure_counts, imu_raw=b.imu_counts, **self._fixed))


class Poller(threading.Thread):
    """Notes when rows appear in the worker's database (another connection: committed rows only)."""

    def __init__(self, db: Path, poll_s: float) -> None:
        super().__init__(daemon=True)
        self.db, self.poll_s = db, poll_s
        self.stop = threading.Event()
        self.raw_seen: dict[tuple[str, int], float] = {}
        self.strides_seen: list[tuple[str, str, float, float]] = []  # session, side, next heel strike, seen
        self.polls_n = 0

    def run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        raw_id = stride_id = 0
        while not self.stop.is_set():
            t = time.time()
            rows = conn.execute("SELECT rowid, device_id, first_seq, n_frames FROM raw_batches WHERE rowid > ?",
                                (raw_id,)).fetchall()
            for rowid, device, seq, n_frames in rows:  # (a row may hold a run of this benchmark's FRAMES-frame batches)
                for first in range(seq, seq + n_frames, FRAMES):
                    self.raw_seen[(device, first)] = t
                raw_id = max(raw_id, rowid)
            rows = conn.execute("SELECT rowid, session_id, side, next_heel_strike_s FROM live_strides WHERE rowid > ?",
                                (stride_id,)).fetchall()
            for rowid, session, side, nhs in rows:
                self.strides_seen.append((session, side, nhs, t))
                stride_id = max(stride_id, rowid)
            self.polls_n += 1
            self.stop.wait(max(0.0, self.poll_s - (time.time() - t)))
        conn.close()


def publish_realtime(settings: MqttSettings, insoles: list[Insole], seconds: float) -> tuple[dict, np.ndarray]:
    """Publish every insole's batches when due; returns publish times by (device, first_seq) and lateness (s).

    A load generator, not the collector: paho's loop runs in this thread (no network thread: a publication is
    written to the socket at once), and the thread wakes at most every ``TICK_S`` to publish every batch then due
    and read the PUBACKs that came meanwhile in one go. paho's network thread costs a wake-up per publication
    and per PUBACK; with 500 insoles per process that was 150-250 us of CPU per publication, which matters when
    the simulated gateways share the box with the broker and the worker (``bench_capacity``)."""
    client = make_client(settings, read_burst_n=1024)
    client.max_inflight_messages_set(65535)
    host, port = settings.addresses[0]
    client.connect(host, port, keepalive=settings.keepalive_s)
    deadline = time.time() + 10
    while not client.is_connected():
        if time.time() > deadline:
            raise MqttConnectError(f"no CONNACK from {host}:{port} within 10 s")
        client.loop(0.05)
    for patient in sorted({i.patient for i in insoles}):
        devices = {i.side: i.device_id for i in insoles if i.patient == patient}
        start = SessionMessage(event="start", session_id=f"lat-{patient}", patient=patient,
                               time_us=int(min(i.t0_s for i in insoles) * 1e6), devices=devices)
        client.publish(topics.session_topic(patient), start.to_json(), qos=1)
    n_batches = int(seconds / BATCH_S)
    heap = [(ins.due_s(0), j, 0) for j, ins in enumerate(insoles)]
    heapq.heapify(heap)
    published: dict[tuple[str, int], float] = {}
    late, infos = [], []
    while heap:
        now = time.time()
        while heap and heap[0][0] <= now:
            due, j, k = heapq.heappop(heap)
            ins = insoles[j]
            t = time.time()
            infos.append(client.publish(ins.topic, ins.payload(k), qos=1))
            published[(ins.device_id, k * FRAMES)] = t
            late.append(t - due)
            if k + 1 < n_batches:
                heapq.heappush(heap, (ins.due_s(k + 1), j, k + 1))
        client.loop(0)  # PUBACKs, what the socket did not take, pings
        if heap:
            time.sleep(max(heap[0][0] - time.time(), TICK_S))
    deadline = time.time() + 10  # the broker has them all (PUBACK) before we disconnect
    while time.time() < deadline and client.is_connected() and not all(i.is_published() for i in infos):
        client.loop(0.05)
    client.disconnect()
    return published, np.array(late)


def latencies(published: dict[tuple[str, int], float], raw_seen: dict[tuple[str, int], float],
              strides_seen: list[tuple[str, str, float, float]], insoles: list[Insole]) -> tuple[np.ndarray, np.ndarray]:
    """Seconds from publish to stored: of each raw batch seen, and of each stride seen (from the publication of the
    batch that holds its ending heel strike), as :class:`Poller` notes them for :func:`publish_realtime`'s streams."""
    by_session = {f"lat-{ins.patient}": ins for ins in insoles if ins.side == "L"}
    t0 = {ins.device_id: ins.t0_s for ins in insoles}
    raw_lat = np.array([seen - published[key] for key, seen in raw_seen.items() if key in published])
    stride_lat = []
    for session, side, nhs, seen in strides_seen:
        ins = by_session.get(session)
        if ins is None:  # another session (an implicit one)
            continue
        device = f"{ins.patient}-{side}"
        k = math.floor((nhs - t0[device]) / BATCH_S + 1e-9)
        t_pub = published.get((device, k * FRAMES))
        if t_pub is not None:
            stride_lat.append(seen - t_pub)
    return raw_lat, np.array(stride_lat)


def pct(x: np.ndarray) -> str:
    if x.size == 0:
        return "no samples"
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return f"p50 {p50 * 1000:6.0f} ms  p95 {p95 * 1000:6.0f} ms  p99 {p99 * 1000:6.0f} ms  max {x.max() * 1000:6.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=250, help="simulated patients, two insoles each")
    ap.add_argument("--seconds", type=float, default=60.0, help="real-time streaming duration")
    ap.add_argument("--poll-ms", type=float, default=10.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    walks = simulated_walks(WALKS_N, args.seconds + 30)
    with tempfile.TemporaryDirectory() as tmp:
        broker, settings = start_broker(Path(tmp))
        db = Path(tmp) / "latency" / "worker.sqlite"
        db.parent.mkdir()
        worker = start_worker(settings, db, worker="0/1", client_id=f"latency-{uuid.uuid4().hex[:6]}", live=True,
                              log_path=db.with_suffix(".log"))
        try:
            start_s = time.time() + 1.0
            insoles = []
            for p in range(args.patients):
                patient = f"lat{p:03d}-{uuid.uuid4().hex[:4]}"
                walk = walks[p % WALKS_N]
                first = int(rng.integers(0, 40))  # each patient joins its walk at its own point
                insoles.extend(Insole(patient, side, walk[side], first, start_s + float(rng.uniform(0, BATCH_S)))
                               for side in "LR")
            print(f"{len(insoles)} insoles ({args.patients} patients x L/R) at 100 Hz in {FRAMES}-frame batches "
                  f"({len(insoles) / BATCH_S:.0f} messages/s) for {args.seconds:.0f} s -> one `kinetic process` worker "
                  f"(SQLite, live strides) on a private Mosquitto; database polled every {args.poll_ms:.0f} ms")
            poller = Poller(db, args.poll_ms / 1000)
            poller.start()
            helpers = child_pids(worker.pid)  # the live-analysis helper process
            cpu0, hcpu0, wall0 = cpu_s(worker.pid), sum(cpu_s(c) for c in helpers), time.time()
            published, late = publish_realtime(settings, insoles, args.seconds)
            time.sleep(3.0)  # the last strides
            cpu1, hcpu1, wall1 = cpu_s(worker.pid), sum(cpu_s(c) for c in helpers), time.time()
            poller.stop.set()
            poller.join(5)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
            broker.terminate()
            broker.wait(5)
        with sqlite3.connect(db) as conn:  # after the run: every published batch stored exactly once?
            stored_keys = [(device, HEADER.unpack_from(p)[11]) for device, payload in
                           conn.execute("SELECT device_id, payload FROM raw_batches") for p in split_payloads(payload)]
            stored = set(stored_keys)
            twice_n = len(stored_keys) - len(stored)
            rejected_n = conn.execute("SELECT COUNT(*) FROM rejections").fetchone()[0]
        lost = [key for key in published if key not in stored]
    raw_lat, stride_lat = latencies(published, poller.raw_seen, poller.strides_seen, insoles)
    missing = len(published) - len(raw_lat)  # stored, but committed after the poller stopped
    print(f"stored {len(published) - len(lost)} of {len(published)} published batches ({len(lost)} lost, "
          f"{twice_n} stored twice, {rejected_n} messages rejected)" + (f"; e.g. {lost[:3]}" if lost else ""))
    print(f"publisher lateness vs real time: {pct(late)}; load average (1 min) at the end {os.getloadavg()[0]:.2f}")
    print(f"worker CPU: {(cpu1 - cpu0) / (wall1 - wall0) * 100:.1f} % of one core, plus "
          f"{(hcpu1 - hcpu0) / (wall1 - wall0) * 100:.1f} % in its live-analysis helper process")
    seen_late = "" if missing == 0 else f", {missing} seen after the end"
    print(f"publish -> raw batch stored   ({len(raw_lat):6d} batches{seen_late}): {pct(raw_lat)}")
    print(f"publish -> live stride stored ({len(stride_lat):6d} strides): {pct(stride_lat)}")
    if stride_lat.size:
        print(f"p99 stride latency {np.percentile(stride_lat, 99):.2f} s (target <= 1.5 s): "
              f"{'met' if np.percentile(stride_lat, 99) <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
