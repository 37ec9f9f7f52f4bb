"""Edge costs and fault handling of issue 21, measured on real processes, each against the checkout ``--repo`` (so
the same command measures a base commit too, e.g. a scratch ``git worktree``):

    .venv/bin/python benchmarks/bench_edge.py disk-writes [--repo .] [--seconds 30]
    .venv/bin/python benchmarks/bench_edge.py reconnect [--repo .] [--n 3]
    .venv/bin/python benchmarks/bench_edge.py disk-full [--repo .]        (as root: mounts a 16 MB tmpfs)
    .venv/bin/python benchmarks/bench_edge.py log-volume [--repo .]

``disk-writes``: ``kinetic collect --emulate-insoles`` (two kc16 insoles at 100 Hz) against the broker at
``KINETIC_MQTT_URL``: ``/proc/<pid>/io`` ``write_bytes`` over the window against the raw payload bytes an
independent subscriber received. ``reconnect``: the same collector and a private Mosquitto stopped for 15 s; the
time from the broker's restart until its log shows the collector connected. ``disk-full``: the collector's outbox
on a 16 MB tmpfs that is then filled: does it exit, does it resume. ``log-volume``: ``kinetic process`` and 3,884
undecodable messages: bytes of log. Results: docs/collector.md, docs/architecture.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PY = sys.executable
ADDRESSES = {"KINETIC_INSOLE_L": "F0:4B:43:00:00:01", "KINETIC_INSOLE_R": "F0:4B:43:00:00:02"}


def _collector(repo: str, work: str, outbox: str, *, patient: str | None = None, **env: str) -> subprocess.Popen:
    patient = patient or "m-" + uuid.uuid4().hex[:8]
    full = dict(os.environ, PYTHONPATH=repo, KINETIC_PATIENT=patient, KINETIC_OUTBOX_PATH=outbox,
                KINETIC_COLLECTOR_CONFIG=f"{work}/none.toml", **ADDRESSES, **env)
    return subprocess.Popen([PY, "-m", "kinetic", "collect", "--emulate-insoles", "--status-interval-s", "1"],
                            cwd=repo, env=full, stdout=subprocess.DEVNULL, stderr=open(f"{work}/err", "w"))


def disk_writes(repo: str, seconds: float) -> str:
    sys.path.insert(0, repo)
    from insole_common import topics
    from transport.mqtt import MqttSettings, connect, make_client

    work = tempfile.mkdtemp(prefix="bench-edge-")
    got = [0]
    settings = MqttSettings.from_env()
    sub = make_client(settings)
    sub.on_message = lambda _c, _u, m: got.__setitem__(0, got[0] + len(m.payload))
    connect(sub, settings)
    patient = "m-" + uuid.uuid4().hex[:8]
    sub.subscribe(topics.raw_topic(patient, "L").rsplit("/", 1)[0] + "/+", qos=1)
    time.sleep(0.5)
    proc = _collector(repo, work, f"{work}/outbox.sqlite", patient=patient)

    def written() -> int:
        with open(f"/proc/{proc.pid}/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))

    time.sleep(8)  # connected, streaming
    w0, b0, t0 = written(), got[0], time.monotonic()
    time.sleep(seconds)
    w1, b1, t1 = written(), got[0], time.monotonic()
    proc.terminate()
    proc.wait(30)
    sub.disconnect()
    dt = t1 - t0
    return (f"payload {(b1 - b0) / dt / 1e3:.1f} kB/s, disk writes {(w1 - w0) / dt / 1e3:.1f} kB/s, "
            f"ratio {(w1 - w0) / max(1, b1 - b0):.2f}x over {dt:.0f} s")


def reconnect(repo: str, n: int) -> str:
    sys.path.insert(0, repo)
    from tests.fixtures.broker import PrivateMosquitto

    work = tempfile.mkdtemp(prefix="bench-edge-")
    broker = PrivateMosquitto(work + "/broker")
    broker.start()
    proc = _collector(repo, work, f"{work}/outbox.sqlite", KINETIC_MQTT_URL=broker.settings.url)
    time.sleep(6)
    log, delays = Path(f"{work}/broker/mosquitto.log"), []
    for _ in range(n):
        broker.stop()
        time.sleep(15)
        size = log.stat().st_size if log.exists() else 0
        t0 = time.monotonic()
        broker.start()
        while time.monotonic() - t0 < 60:
            if re.search(r"New client connected .* as ", log.read_text()[size:]):
                break
            time.sleep(0.02)
        delays.append(time.monotonic() - t0)
        time.sleep(3)
    proc.terminate()
    proc.wait(30)
    broker.stop()
    return "reconnect after the broker's return (s): " + " ".join(f"{d:.2f}" for d in delays)


def disk_full(repo: str) -> str:
    work = tempfile.mkdtemp(prefix="bench-edge-")
    disk = f"{work}/disk"
    os.makedirs(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", disk], check=True)
    try:
        proc = _collector(repo, work, f"{disk}/outbox.sqlite", KINETIC_TOPIC_ROOT=f"bench-{uuid.uuid4().hex[:6]}/v1")
        time.sleep(8)
        with open(f"{disk}/filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 20:
            time.sleep(0.1)
        if proc.poll() is not None:
            return f"exited with {proc.returncode} {time.monotonic() - t0:.1f} s after the disk filled"
        full = Path(f"{work}/err").read_text().splitlines()[-1]
        os.unlink(f"{disk}/filler")
        time.sleep(8)
        after = Path(f"{work}/err").read_text().splitlines()[-1]
        proc.terminate()
        return f"alive 20 s after the disk filled ({full}); 8 s after freeing: {after}; SIGTERM -> exit {proc.wait(40)}"
    finally:
        subprocess.run(["umount", "-l", disk], check=False)


def log_volume(repo: str) -> str:
    sys.path.insert(0, repo)
    from insole_common import topics
    from transport.mqtt import MqttSettings, connect, make_client

    work = tempfile.mkdtemp(prefix="bench-edge-")
    os.environ["KINETIC_TOPIC_ROOT"] = f"bench-{uuid.uuid4().hex[:6]}/v1"
    with Path(f"{work}/out").open("w") as out, Path(f"{work}/err").open("w") as err_file:
        proc = subprocess.Popen([PY, "-m", "kinetic", "process", "--db", f"{work}/kc.sqlite", "--archive", f"{work}/a",
                                 "--client-id", f"bench-{uuid.uuid4().hex[:6]}", "--live-in-worker"], cwd=repo,
                                env=dict(os.environ, PYTHONPATH=repo), stdout=out, stderr=err_file)
    while "ready" not in Path(f"{work}/out").read_text():
        time.sleep(0.1)
    settings = MqttSettings.from_env()
    client = make_client(settings)
    connect(client, settings)
    topic = topics.raw_topic("m-logvol", "L")  # (a base checkout uses kc/v1 whatever the variable says)
    for k in range(3884):
        client.publish(topic, b"junk%d" % k, qos=1)
    time.sleep(8)
    proc.terminate()
    proc.wait(30)
    err = Path(f"{work}/err").read_text()
    return f"{len(err.encode())} bytes of log, {len(err.splitlines())} lines for 3,884 rejected messages"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["disk-writes", "reconnect", "disk-full", "log-volume"])
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--n", type=int, default=3)
    args = ap.parse_args()
    repo = str(Path(args.repo).resolve())
    result = {"disk-writes": lambda: disk_writes(repo, args.seconds), "reconnect": lambda: reconnect(repo, args.n),
              "disk-full": lambda: disk_full(repo), "log-volume": lambda: log_volume(repo)}[args.what]()
    print(f"{args.what} ({repo}): {result}")


if __name__ == "__main__":
    main()
