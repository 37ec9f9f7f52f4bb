"""Capacity on one box, broker included: workers on the NATS cluster, and insoles streamed end to end.

    .venv/bin/python -m benchmarks.bench_capacity --insoles 500,2000,5000 --broker mosquitto,nats [--workers 1,2,3]

Part 1, workers on the cluster (``--workers``; ``--workers ""`` skips it): a private three-node NATS cluster
(``tests.fixtures.nats``; JetStream MQTT streams and sessions on all three nodes) is pre-loaded with
``--batches`` QoS 1 batches of simulated walking from ``--devices`` insoles (``bench_ingest``'s messages) for
1, 2 and 3 ``kinetic process`` workers (``--worker I/N``, each its own OS process and SQLite file, worker I
connected to node I mod 3, as deployed with live strides), which subscribe and stop while the batches are
published, then start again and are timed from the moment all run until every batch is stored. Printed:
batches/s as a ratio to one worker, zero loss, and that each device's batches are all in the one worker that
owns its partition.

Part 2, end to end, for each broker (a private Mosquitto as ``bench_ingest``'s, or a fresh private three-node
NATS cluster) and each number of insoles: patients (two insoles each) stream for ``--seconds`` at the real rate
(``bench_latency``'s publisher: 100 Hz, a 50-frame batch every 0.5 s per insole, QoS 1, after a session
start), spread over publisher processes of ``--per-publisher`` insoles each (on NATS, publisher j connects
to node j mod 3), into ``--e2e-workers`` ``kinetic process`` workers as deployed (live strides; on NATS
connected to node 0). The workers' databases are polled every ``--poll-ms`` (committed rows only).

Printed per run: publish -> raw batch stored and publish -> live stride stored, p50/p99/max (batches not
stored within ``--settle-s`` after the end count as later than that); whether the raw latency grows during
the run (falling behind); each publisher's lateness against its real-time schedule and the rate it
achieved; the CPU of the broker, the worker(s) and their live-analysis helpers, the publishers, the
benchmark's own reader and the rest of the machine, in % of one core (the box has ``os.cpu_count()``); the
load average. Every process started here is stopped in ``finally`` blocks, has its own timeout, and a
watchdog ends the whole run after ``--deadline-s``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

import numpy as np
import psutil

from benchmarks.bench_ingest import (
    FRAMES,
    child_pids,
    make_messages,
    publish_all,
    start_broker,
    start_worker,
    stored_batches_n,
    stored_frames,
)
from benchmarks.bench_latency import BATCH_S, WALKS_N, Insole, Poller, latencies, publish_realtime, simulated_walks
from insole_common import topics
from tests.fixtures.nats import NatsCluster, nats_available
from transport.mqtt import MqttSettings

STARTED: list[int] = []  # pids of every process this run started (the watchdog's list)
PUBLISHER_CPUS: set[int] | None = None  # --pin-publishers: the cores the publishers run on (inherited through fork())
_INSOLES: list[Insole] = []  # the publishers' share of it is inherited through fork()


@contextmanager
def broker(kind: str, workdir: Path, *, ack_wait_s: float = 30.0) -> Iterator[tuple[list[int], list[MqttSettings]]]:
    """A private broker: (its pids, settings per node: Mosquitto has one, the cluster three)."""
    if kind == "mosquitto":
        proc, settings = start_broker(workdir)
        STARTED.append(proc.pid)
        try:
            yield [proc.pid], [settings]
        finally:
            proc.terminate()
            proc.wait(10)
        return
    cluster = NatsCluster(workdir / f"nats-{uuid.uuid4().hex[:4]}", n=3, ack_wait_s=ack_wait_s)
    try:
        cluster.start_node(0)  # (start() does the same; the pids are noted as soon as each node exists)
        cluster.start_node(1)
        cluster.start_node(2)
        STARTED.extend(p.pid for p in cluster.procs if p is not None)
        for i in range(3):
            cluster.wait_ready(i)
        order = [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
        yield [p.pid for p in cluster.procs if p is not None], [cluster.settings(*o, keepalive_s=60) for o in order]
    finally:
        cluster.stop()


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.terminate()
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def workers(nodes: list[MqttSettings], workdir: Path, n: int, run: str) -> tuple[list[subprocess.Popen], list[Path]]:
    dbs = [workdir / run / f"worker{i}.sqlite" for i in range(n)]
    dbs[0].parent.mkdir(parents=True, exist_ok=True)  # (called again for the same run: the same workers restart)
    procs: list[subprocess.Popen | None] = [None] * n

    def one(i: int) -> None:  # all start at once (a worker drains while the next starts)
        procs[i] = start_worker(nodes[i % len(nodes)], dbs[i], worker=f"{i}/{n}", client_id=f"{run}-{i}", live=True,
                                log_path=dbs[i].with_suffix(".log"))
        STARTED.extend([procs[i].pid, *child_pids(procs[i].pid)])
    starts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in starts:
        t.start()
    for t in starts:
        t.join()
    if None in procs:
        stop([p for p in procs if p is not None])
        raise RuntimeError(f"a worker of {run} did not start")
    return [p for p in procs if p is not None], dbs


def ownership_faults(dbs: list[Path]) -> int:
    """Devices stored by more than one worker, or by a worker that does not own their partition."""
    owner: dict[str, set[int]] = {}
    for i, db in enumerate(dbs):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            for (device,) in conn.execute("SELECT DISTINCT device_id FROM raw_batches"):
                owner.setdefault(device, set()).add(i)
    n = len(dbs)
    return sum(len(w) != 1 or topics.partition_of(d.rsplit("-", 1)[0]) % n != next(iter(w)) for d, w in owner.items())


def drain(nodes: list[MqttSettings], messages, workdir: Path, n: int, timeout_s: float,
          broker_pids: list[int]) -> tuple[float, str]:
    """Batches/s of ``n`` workers draining ``messages`` from the cluster, and what was stored and CPU used.

    The workers subscribe (persistent sessions) and stop; the backlog is published through all three nodes;
    the workers start again and are timed from the moment all of them are ready (the batches stored before
    that are not counted). Not SIGSTOP as bench_ingest: a stopped client misses its keep-alive during a slow
    pre-load, and restarting onto a backlog is what a deployed worker does."""
    run = f"scale{n}-{uuid.uuid4().hex[:4]}"
    procs, dbs = workers(nodes, workdir, n, run)
    stop(procs)
    chunks = [messages[j::3] for j in range(3)]
    pubs = [threading.Thread(target=publish_all, args=(nodes[j], chunks[j])) for j in range(3)]
    for t in pubs:
        t.start()
    for t in pubs:
        t.join()
    procs, dbs = workers(nodes, workdir, n, run)
    try:
        t0, stored0 = time.perf_counter(), sum(stored_batches_n(db) for db in dbs)
        meter = CpuMeter({"cluster": broker_pids, "workers": [p.pid for p in procs]})
        while sum(stored_batches_n(db) for db in dbs) < len(messages) and time.perf_counter() - t0 < timeout_s:
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        cpu, box, _wall = meter.percent()
    finally:
        stop(procs)
    got = [stored_frames(db) for db in dbs]
    keys_n, frames_n = sum(k for _, k in got), sum(f for f, _ in got)
    faults = ownership_faults(dbs)
    verdict = (f"{keys_n} of {len(messages)} batches, {'none twice' if frames_n == keys_n * FRAMES else 'SOME TWICE'}"
               f", {'each device in its one owner' if faults == 0 else f'{faults} DEVICES IN A WRONG/SECOND WORKER'}"
               f" ({stored0} before all were ready); CPU % of a core: cluster {cpu['cluster']:.0f}, "
               f"workers {cpu['workers']:.0f}, machine {box:.0f}")
    return (sum(stored_batches_n(db) for db in dbs) - stored0) / elapsed, verdict


def scale_workers(args, workdir: Path) -> None:
    counts = args.workers
    if not counts:
        return
    messages = make_messages(args.batches, args.devices)
    print(f"\n== workers on a three-node NATS cluster: a backlog of {len(messages)} batches from {args.devices} insoles")
    base = None
    for n in counts:
        with broker("nats", workdir) as (pids, nodes):
            load = os.getloadavg()[0]
            rate, verdict = drain(nodes, messages, workdir, n, args.settle_s * 20, pids)
        base = base or rate
        print(f"{n} worker{'s' if n > 1 else ' '} (--worker I/{n}): {rate:7.0f} batches/s = {rate / base:.2f}x one "
              f"worker; {verdict}; load average {load:.1f}", flush=True)


def publisher(j: int, first: int, last: int, settings: MqttSettings, seconds: float, out: Path) -> None:
    """A publisher process (forked): the insoles ``first:last`` of ``_INSOLES`` at their real rate."""
    signal.alarm(int(seconds + 60))  # ends itself whatever the broker does
    if PUBLISHER_CPUS is not None:
        os.sched_setaffinity(0, PUBLISHER_CPUS)
    cpu0 = time.process_time()
    published, late = publish_realtime(settings, _INSOLES[first:last], seconds)
    out.write_bytes(pickle.dumps((published, late, time.process_time() - cpu0)))


def make_insoles(n_insoles: int, walks: list, start_s: float) -> list[Insole]:
    rng = np.random.default_rng(0)
    insoles = []
    for p in range(n_insoles // 2):
        patient = f"cap{p:04d}-{uuid.uuid4().hex[:4]}"
        walk, first = walks[p % WALKS_N], int(rng.integers(0, 40))
        insoles.extend(Insole(patient, side, walk[side], first, start_s + float(rng.uniform(0, BATCH_S)))
                       for side in "LR")
    return insoles


class CpuMeter:
    """CPU seconds of groups of processes (with their children) and of the whole machine, between two marks."""

    def __init__(self, groups: dict[str, list[int]], alone: tuple[str, ...] = ("reader",)) -> None:
        self.groups, self.alone = groups, alone  # alone: groups counted without their children
        self.t0, self.cpu0, self.box0 = time.time(), self._read(), self._box()

    @staticmethod
    def _box() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _read(self) -> dict[str, float]:
        out = {}
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids:
                try:
                    p = psutil.Process(pid)
                    total += sum(p.cpu_times()[:2])
                    if name not in self.alone:  # (e.g. the reader's children are the other groups)
                        total += sum(sum(c.cpu_times()[:2]) for c in p.children(recursive=True))
                except psutil.Error:
                    pass
            out[name] = total
        return out

    def percent(self) -> tuple[dict[str, float], float, float]:
        """% of one core per group, of the whole machine, and the wall seconds since the start."""
        wall = time.time() - self.t0
        now = self._read()
        return ({k: (now[k] - self.cpu0[k]) / wall * 100 for k in now}, (self._box() - self.box0) / wall * 100, wall)


def pctl(x: np.ndarray) -> str:
    if x.size == 0:
        return "no samples"
    p50, p99 = np.percentile(x, [50, 99])
    fmt = lambda v: f"{v:6.2f} s" if np.isfinite(v) else "   not stored"  # noqa: E731 - a local format
    return f"p50 {fmt(p50)}  p99 {fmt(p99)}  max {fmt(x.max())}"


def stream(kind: str, n_insoles: int, walks: list, args, workdir: Path) -> None:
    """One end-to-end run: ``n_insoles`` at their real rate through ``kind`` into the worker(s)."""
    global _INSOLES  # noqa: PLW0603 - handed to the forked publishers
    with broker(kind, workdir) as (broker_pids, nodes):
        procs, dbs = workers(nodes, workdir, args.e2e_workers, f"e2e-{kind}-{n_insoles}-{uuid.uuid4().hex[:4]}")
        pub_procs: list[mp.Process] = []
        try:
            n_pub = -(-n_insoles // args.per_publisher)
            start_s = time.time() + 2.0 + 0.05 * n_pub
            _INSOLES = make_insoles(n_insoles, walks, start_s)
            outs = [workdir / f"pub-{uuid.uuid4().hex[:6]}.pickle" for _ in range(n_pub)]
            ctx = mp.get_context("fork")
            per = -(-len(_INSOLES) // n_pub // 2) * 2  # whole patients per publisher
            for j in range(n_pub):
                pub_procs.append(ctx.Process(target=publisher, args=(
                    j, j * per, min(len(_INSOLES), (j + 1) * per), nodes[j % len(nodes)], args.seconds, outs[j])))
                pub_procs[-1].start()
                STARTED.append(pub_procs[-1].pid)
            pollers = [Poller(db, args.poll_ms / 1000) for db in dbs]
            for p in pollers:
                p.start()
            time.sleep(max(0.0, start_s - time.time()))
            stored0 = sum(stored_batches_n(db) for db in dbs)
            meter = CpuMeter({"broker": broker_pids, "workers": [p.pid for p in procs],
                              "live helpers": [c for p in procs for c in child_pids(p.pid)],
                              "publishers": [p.pid for p in pub_procs if p.pid], "reader": [os.getpid()]},
                             alone=("reader", "workers"))
            time.sleep(args.seconds)
            cpu, box, wall = meter.percent()  # over the streaming window only
            window = (meter.t0, wall, sum(stored_batches_n(db) for db in dbs) - stored0)
            load = os.getloadavg()
            for p in pub_procs:
                p.join(args.seconds + 90)
            deadline = time.time() + args.settle_s
            while time.time() < deadline and sum(stored_batches_n(db) for db in dbs) < len(_INSOLES) * int(
                    args.seconds / BATCH_S):
                time.sleep(0.1)
            time.sleep(min(1.0, max(0.0, deadline - time.time())))  # the last strides
            for p in pollers:
                p.stop.set()
                p.join(10)
        finally:
            for p in pub_procs:
                if p.is_alive():
                    p.kill()
            stop(procs)
    report(n_insoles, kind, outs, pollers, (cpu, box, window), load, args)


def report(n_insoles: int, kind: str, outs: list[Path], pollers: list[Poller], usage: tuple, load: tuple,
           args) -> None:
    cpu, box, (w0, wall, stored_n) = usage
    published: dict = {}
    pub_lines = []
    for j, out in enumerate(outs):
        if not out.exists():
            pub_lines.append(f"publisher {j}: DID NOT FINISH")
            continue
        pub, late, pub_cpu = pickle.loads(out.read_bytes())  # noqa: S301 - written by our own child process
        published.update(pub)
        per = len({d for d, _ in pub})
        t0 = {ins.device_id: ins.t0_s for ins in _INSOLES}  # batch k of an insole is due at t0 + (k + 1) * 0.5 s
        start_s = min(t0.values())
        due_span = max(t0[d] + (seq // FRAMES + 1) * BATCH_S for d, seq in pub) - start_s
        pub_span = max(pub.values()) - start_s
        pub_lines.append(f"p{j}: {per} insoles, {len(pub) / pub_span:.0f}/{len(pub) / due_span:.0f} msg/s, late p99 "
                         f"{np.percentile(late, 99) * 1000:.0f} ms max {late.max() * 1000:.0f} ms, "
                         f"CPU {pub_cpu / args.seconds * 100:.0f} %")
    raw_seen = {k: v for p in pollers for k, v in p.raw_seen.items()}
    strides = [s for p in pollers for s in p.strides_seen]
    raw_lat, stride_lat = latencies(published, raw_seen, strides, _INSOLES)
    missing_n = len(published) - raw_lat.size
    raw_all = np.concatenate([raw_lat, np.full(missing_n, np.inf)])
    t_pub = np.array([published[k] for k in raw_seen if k in published])
    t0 = min(published.values()) if published else 0.0
    early, late_ = raw_lat[t_pub < t0 + 5], raw_lat[t_pub > t0 + args.seconds - 5]
    growth = (np.median(late_) - np.median(early)) if early.size and late_.size else float("nan")
    print(f"\n-- {kind}, {n_insoles} insoles ({n_insoles / BATCH_S:.0f} batches/s) for {args.seconds:.0f} s, "
          f"{len(outs)} publisher processes, {args.e2e_workers} worker(s); load average {load[0]:.1f} "
          f"(1 min) {load[1]:.1f} (5 min)")
    print(f"   publish -> raw batch stored    ({raw_lat.size:6d} of {len(published)}): {pctl(raw_all)}; median "
          f"{'grew' if growth > 0.25 else 'changed'} {growth:+.2f} s from the first to the last 5 s")
    print(f"   publish -> live stride stored  ({stride_lat.size:6d} strides): {pctl(stride_lat)}")
    print("   CPU, % of one core over the streaming window: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
          + f", rest of the machine {box - sum(cpu.values()):.0f} (box total {box:.0f} of {os.cpu_count() * 100})")
    print("   publishers: " + "; ".join(pub_lines))
    print("   " + cost_per_message(cpu, wall, sum(w0 <= t <= w0 + wall for t in published.values()), stored_n))
    ok = missing_n == 0 and stride_lat.size and np.percentile(stride_lat, 99) <= 1.0
    print(f"   => {'KEEPS UP (stride p99 <= 1 s)' if ok else 'DOES NOT KEEP UP'}", flush=True)


def cost_per_message(cpu: dict[str, float], wall: float, published_n: int, stored_n: int) -> str:
    """CPU ms per 1,000 messages of each part over the window (the workers' per message stored, the others' per
    message published). It falls as the rate grows: the worker stores more messages per commit."""
    if not published_n or not stored_n:
        return "CPU per message: nothing published or stored in the window"
    per = {k: v / 100 * wall / (stored_n if k in ("workers", "live helpers") else published_n) * 1e6
           for k, v in cpu.items() if k != "reader"}
    return ("CPU ms per 1,000 messages at this rate: " + ", ".join(f"{k} {v:.0f}" for k, v in per.items())
            + f" (workers and their helpers: per message stored, {stored_n} in the window)")


def watchdog(deadline_s: float) -> None:
    """Ends every process this run started, then the run itself, after ``deadline_s``."""
    def fire() -> None:
        print(f"watchdog: {deadline_s:.0f} s passed, stopping", flush=True)
        for pid in STARTED:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        os._exit(2)
    t = threading.Timer(deadline_s, fire)
    t.daemon = True
    t.start()


def counts(text: str) -> list[int]:
    """A comma-separated list of positive whole numbers ('' = none), for argparse."""
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if any(n < 1 for n in out):
        raise argparse.ArgumentTypeError(f"{text!r}: every number must be at least 1")
    return out


def brokers(text: str) -> list[str]:
    out = [k.strip() for k in text.split(",") if k.strip()]
    if unknown := [k for k in out if k not in ("mosquitto", "nats")]:
        raise argparse.ArgumentTypeError(f"unknown broker {unknown[0]!r}: use mosquitto and/or nats")
    return out


def pin_publishers() -> None:
    """Publishers on the last core, this process and everything it starts later (brokers, workers and their
    helpers inherit it) on the others."""
    global PUBLISHER_CPUS  # noqa: PLW0603 - read by the forked publishers
    cores = list(range(os.cpu_count() or 1))
    if len(cores) < 2:
        raise SystemExit("--pin-publishers needs at least 2 cores")
    PUBLISHER_CPUS = {cores[-1]}
    os.sched_setaffinity(0, set(cores[:-1]))
    print(f"pinned: publishers on core {cores[-1]}; brokers, workers and the reader on {cores[:-1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--insoles", type=counts, default="500,2000,5000", help="insoles per end-to-end run, comma-separated")
    ap.add_argument("--broker", type=brokers, default="mosquitto,nats", help="mosquitto and/or nats (a three-node cluster)")
    ap.add_argument("--seconds", type=float, default=20.0, help="real-time streaming per run")
    ap.add_argument("--per-publisher", type=int, default=500, help="insoles per publisher process")
    ap.add_argument("--e2e-workers", type=int, default=1)
    ap.add_argument("--settle-s", type=float, default=10.0, help="wait after streaming for the backlog")
    ap.add_argument("--poll-ms", type=float, default=20.0)
    ap.add_argument("--workers", type=counts, default="1,2,3", help="worker counts on the cluster, part 1 ('' skips it)")
    ap.add_argument("--batches", type=int, default=20_000, help="part 1's backlog")
    ap.add_argument("--devices", type=int, default=64, help="part 1's insoles")
    ap.add_argument("--workdir", help="keep brokers' and workers' files and logs here (default: a temporary folder)")
    ap.add_argument("--pin-publishers", action="store_true",
                    help="run the publishers on the last core only and everything else this run starts (brokers, "
                         "workers, the reader) on the other cores: what the server side does with the cores left "
                         "to it, whatever the simulated gateways cost (Linux)")
    ap.add_argument("--deadline-s", type=float, default=1800.0, help="the whole run, then everything is stopped")
    args = ap.parse_args()
    kinds = args.broker
    if "nats" in kinds or args.workers:
        assert nats_available(), "nats-server is not installed"
    watchdog(args.deadline_s)
    if args.pin_publishers:
        pin_publishers()
    print(f"{os.cpu_count()} cores; load average at the start {os.getloadavg()[0]:.1f} (a shared machine)")
    with (nullcontext(tempfile.mkdtemp(dir=args.workdir)) if args.workdir else tempfile.TemporaryDirectory()) as tmp:
        scale_workers(args, Path(tmp))
        sizes = args.insoles
        if sizes:
            walks = simulated_walks(WALKS_N, args.seconds + 30)
        for kind in kinds:
            for n in sizes:
                stream(kind, n, walks, args, Path(tmp))


if __name__ == "__main__":
    main()
