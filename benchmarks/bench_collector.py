"""Collector cost for two insoles at 100 Hz and 200 Hz, and decode throughput against a bare unpack.

    .venv/bin/python benchmarks/bench_collector.py [--duration-s 20] [--rates 100 200] [--modes pipeline bumble]

Each configuration runs in a fresh process (clean RSS) against the real broker
(``KINETIC_MQTT_URL``, default 127.0.0.1:1883, a unique patient topic):

``pipeline``  what the collector process itself does per notification: the
              profile decoder, ordering/gap accounting, clock alignment,
              batching, the durable outbox (SQLite, fsync) and the QoS 1
              publisher. Notifications (exact kc16 bytes) are fed at the real
              rate from memory, in place of the OS Bluetooth stack.
``bumble``    the same plus the whole BLE path in this process: bleak, the
              Bumble host on the collector side, *and* the emulated insoles
              with their own Bumble stacks - an upper bound, since on a real
              system the insoles are other devices and the host stack is BlueZ.

Targets (issue 4): <= 3 % of one core and <= 60 MB RSS for the collector.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


async def _measure(duration_s: float, warmup_s: float, sample) -> dict:
    proc = psutil.Process()
    await asyncio.sleep(warmup_s)
    c0, w0 = _cpu_s(proc), time.monotonic()
    rss_max = 0
    while time.monotonic() - w0 < duration_s:
        await asyncio.sleep(0.5)
        rss_max = max(rss_max, proc.memory_info().rss)
    cpu = _cpu_s(proc) - c0
    wall = time.monotonic() - w0
    out = {"cpu_pct_one_core": round(100 * cpu / wall, 2), "rss_mb": round(rss_max / 2**20, 1),
           "wall_s": round(wall, 1)}
    out.update(sample())
    return out


def run_one(mode: str, rate_hz: float, duration_s: float) -> dict:
    from collector.emulation.signals import synthetic_imu, synthetic_pressure
    from collector.profiles import get_profile, kc_open
    from collector.service import Collector, CollectorConfig
    from collector.sources.base import InsoleSource
    from collector.sources.ble import BleInsoleSource, NotificationDecoder
    from transport.mqtt import MqttSettings

    patient = f"bench-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="kc-bench-"))
    warmup_s = 3.0

    class ReplaySource(InsoleSource):
        """Feeds pre-built notifications through the BLE source's decoder at the real rate."""

        def __init__(self, side: str, notifications: list[bytes], per_s: float) -> None:
            super().__init__()
            self.side, self.device_id = side, f"bench-{side}"
            self.decoder = NotificationDecoder(get_profile("kc16"), side=side, device_id=self.device_id,
                                               status=self.status)
            self.notifications, self.per_s = notifications, per_s
            self.sample_rate_hz = rate_hz

        async def frames(self):
            self.status.connected = True
            t0 = time.monotonic()
            for i, data in enumerate(self.notifications):
                delay = t0 + i / self.per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                for f in self.decoder.feed(data, time.time_ns() // 1000):
                    yield f

    async def main() -> dict:
        insoles = []
        if mode == "pipeline":  # no Bumble imported: the process holds what a real collector holds
            sources = []
            for side in ("L", "R"):
                n_total = int((duration_s + warmup_s + 2) * rate_hz / 5) + 1
                notes = []
                for k in range(n_total):
                    seqs = np.arange(5 * k, 5 * k + 5)
                    notes.append(kc_open.encode_packet(
                        5 * k, int(5 * k * 1e6 / rate_hz), synthetic_pressure(seqs, rate_hz, 16, side),
                        sample_rate_hz=int(rate_hz), imu_raw=synthetic_imu(seqs, rate_hz), battery_pct=80))
                sources.append(ReplaySource(side, notes, rate_hz / 5))
        else:
            from collector.emulation import BumbleLink, EmulatedInsole

            link = BumbleLink()
            for side in ("L", "R"):
                ins = EmulatedInsole(link, address=f"F0:00:00:00:09:0{1 if side == 'L' else 2}", side=side,
                                     sample_rate_hz=rate_hz, max_frames_per_notification=5)
                await ins.start()
                insoles.append(ins)
            sources = [BleInsoleSource(address=i.address, side=i.side, scanner_backend=link.scanner_backend,
                                       client_backend=link.client_backend) for i in insoles]
        collector = Collector(CollectorConfig(patient=patient, outbox_path=tmp / "outbox.sqlite",
                                              status_interval_s=5.0),
                              sources, MqttSettings.from_env())
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop=stop))

        def sample() -> dict:
            return {"frames_received": sum(s.status.frames_received_n for s in sources),
                    "frames_missing": sum(s.status.frames_missing_n for s in sources),
                    "outbox_depth": len(collector.outbox), "published": collector.publisher.published_n}

        result = await _measure(duration_s, warmup_s, sample)
        stop.set()
        await asyncio.wait_for(task, 30)
        for ins in insoles:
            await ins.stop()
        return result

    result = asyncio.run(main())
    result.update(mode=mode, rate_hz=rate_hz, insoles=2)
    return result


def decode_throughput(n: int = 20_000) -> list[dict]:
    """Frames per second: our decoders vs a bare struct + numpy unpack of the same bytes, same run."""
    from collector.emulation.signals import synthetic_imu, synthetic_pressure
    from collector.profiles import get_profile, kc_open, orphe
    from collector.sources.base import SourceStatus
    from collector.sources.ble import NotificationDecoder

    out = []
    seqs = np.arange(5)
    kc_notes = [kc_open.encode_packet(5 * k % 65536, 50_000 * k % (1 << 32),
                                      synthetic_pressure(seqs + 5 * k, 100, 16, "L"),
                                      sample_rate_hz=100, imu_raw=synthetic_imu(seqs + 5 * k, 100), battery_pct=80)
                for k in range(n)]
    or_notes = [orphe.encode_packet(55, k % 65536, (20 * k) % orphe.MS_PER_DAY,
                                    synthetic_pressure(np.arange(4) + 4 * k, 200, 6, "L"),
                                    synthetic_imu(np.arange(4) + 4 * k, 200)) for k in range(n)]
    kc_dtype = np.dtype([("p", "<u2", (16,)), ("imu", "<i2", (6,))])
    hdr = struct.Struct("<BBHIBBHBB")
    or_dtype = np.dtype({"names": ["gyro", "acc", "p"], "formats": [(">i2", (3,)), (">i2", (3,)), (">u2", (6,))],
                         "offsets": [0, 6, 12], "itemsize": 24})

    def timed(fn, notes, frames_per_note) -> float:
        t = time.perf_counter()
        for d in notes:
            fn(d)
        return len(notes) * frames_per_note / (time.perf_counter() - t)

    def kc_bare(d):
        hdr.unpack_from(d)
        a = np.frombuffer(d, dtype=kc_dtype, count=5, offset=14)
        return a["p"].astype(np.uint16), a["imu"].astype(np.int16)

    def or_bare(d):
        struct.unpack_from(">BHBBBH", d)
        a = np.frombuffer(d, dtype=or_dtype, count=4, offset=8)
        return a["p"].astype(np.uint16), a["gyro"].astype(np.int16)

    kc, orp = get_profile("kc16"), get_profile("orphe")
    dec = NotificationDecoder(kc, side="L", device_id="b", status=SourceStatus())
    t_us = [1_700_000_000_000_000 + 50_000 * k for k in range(n)]
    it = iter(t_us)
    out.append({"what": "kc16 notification (5 frames x 16 ch + IMU)",
                "bare_struct_numpy_frames_per_s": round(timed(kc_bare, kc_notes, 5)),
                "profile_decode_frames_per_s": round(timed(kc.decode, kc_notes, 5)),
                "full_decoder_frames_per_s": round(timed(lambda d: dec.feed(d, next(it)), kc_notes, 5))})
    out.append({"what": "ORPHE 104-byte notification (4 frames x 6 ch + IMU)",
                "bare_struct_numpy_frames_per_s": round(timed(or_bare, or_notes, 4)),
                "profile_decode_frames_per_s": round(timed(orp.decode, or_notes, 4))})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration-s", type=float, default=20.0)
    ap.add_argument("--rates", type=float, nargs="+", default=[100.0, 200.0])
    ap.add_argument("--modes", nargs="+", default=["pipeline", "bumble"], choices=["pipeline", "bumble"])
    ap.add_argument("--one", nargs=2, metavar=("MODE", "RATE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], float(args.one[1]), args.duration_s)))
        return 0
    results = []
    for mode in args.modes:
        for rate in args.rates:
            out = subprocess.run([sys.executable, __file__, "--one", mode, str(rate), "--duration-s",
                                  str(args.duration_s)],
                                 check=False, capture_output=True, text=True, timeout=args.duration_s + 120,
                                 env=dict(os.environ))
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"{mode:<8} 2 insoles @ {rate:>5.0f} Hz: CPU {r['cpu_pct_one_core']:5.2f} % of one core, "
                  f"RSS {r['rss_mb']:5.1f} MB, {r['frames_received']} frames, {r['frames_missing']} missing, "
                  f"outbox depth {r['outbox_depth']}")
    for r in decode_throughput():
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
