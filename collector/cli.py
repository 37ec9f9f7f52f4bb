"""``kinetic scan``, ``kinetic pair`` and ``kinetic collect``: the collector's command line.

``--emulate-insoles`` runs emulated insoles on an in-process Bumble link
instead of the radio (demos, tests, trying the collector without hardware).

Imported only when a command runs: the Bluetooth stack (bleak, :mod:`collector.sources.ble`; D-Bus on
Linux) and the emulation (bumble, an optional dependency), so that ``kinetic --help`` needs neither.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from collector.config import CollectorSettings, load_settings, save_settings
from collector.errors import CollectorError
from collector.profiles import PROFILES, get_profile
from collector.service import Collector, CollectorConfig
from collector.sources.base import InsoleSource
from insole_common.codec import SIDES
from insole_common.errors import InsoleError
from transport.mqtt import MqttSettings

if TYPE_CHECKING:
    from collector.emulation.emulated_insole import EmulatedInsole

log = logging.getLogger(__name__)

EMULATED_ADDRESSES = {"L": "F0:4B:43:00:00:01", "R": "F0:4B:43:00:00:02"}


def _arg(*flags: str, **options) -> tuple[tuple[str, ...], dict]:
    return flags, options


#: the collector's subcommands: name -> (help, description, arguments); each also gets the emulation options
COMMANDS = {
    "scan": ("list insoles advertising nearby", "Scan for insoles (filtered by the profiles' service UUIDs).", (
        _arg("--timeout-s", type=float, default=5.0, help="how long to listen, in seconds (default 5)"),
        _arg("--profile", choices=sorted(PROFILES), help="only this profile (default: all)"),
    )),
    "pair": ("pair a patient's left and right insole",
             ("Store the patient's pseudonym and insole addresses in the config file. "
              "Without --left/--right, scans and asks each insole which foot it is."), (
        _arg("--patient", required=True, help="the patient's pseudonym (never a name)"),
        _arg("--left", help="Bluetooth address of the left insole"),
        _arg("--right", help="Bluetooth address of the right insole"),
        _arg("--profile", choices=sorted(PROFILES), default=None, help="device profile (default: kc16)"),
        _arg("--timeout-s", type=float, default=8.0, help="scan time, in seconds (default 8)"),
        _arg("--config", type=Path, help="config file (default ~/.config/kinetic/collector.toml)"),
    )),
    "collect": ("record the paired insoles and forward them to the broker",
                ("Connect to the paired insoles, publish every sample through the durable outbox, and show a live "
                 "one-line status. Stop with Ctrl-C (SIGINT) or SIGTERM."), (
        _arg("--config", type=Path, help="config file (default ~/.config/kinetic/collector.toml)"),
        _arg("--status-interval-s", type=float, default=2.0, help="status line / MQTT status period (default 2)"),
        _arg("--duration-s", type=float, default=None, help="stop after this many seconds (default: run until stopped)"),
        _arg("--metrics-port", type=int, default=None,
             help="serve the collector's counters (frames, published, outbox depth, storage_full, dropped) in the "
             "Prometheus text format on http://127.0.0.1:PORT/metrics (default: off)"),
    )),
}


def register(subparsers) -> None:
    run = {"scan": cmd_scan, "pair": cmd_pair, "collect": cmd_collect}
    for name, (help_text, description, arguments) in COMMANDS.items():
        p = subparsers.add_parser(name, help=help_text, description=description)
        for flags, options in arguments:
            p.add_argument(*flags, **options)
        _emulation_args(p)
        p.set_defaults(func=run[name])


def _emulation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("emulation (no radio)")
    g.add_argument("--emulate-insoles", action="store_true",
                   help="talk to two emulated insoles on an in-process Bumble link instead of the Bluetooth adapter "
                   "(collect: without paired addresses, the emulated insoles' own)")
    g.add_argument("--emulate-rate-hz", type=float, default=100.0, help="emulated sample rate (default 100)")
    g.add_argument("--emulate-log", type=Path, help="append every emulated notification to this JSON-lines file")


class _Emulation:
    """Two emulated insoles on a Bumble link, plus the bleak backends to reach them."""

    def __init__(self, args, profile: str, addresses: dict[str, str]) -> None:
        from collector.emulation import BumbleLink  # noqa: PLC0415 - bumble is optional; imported only with --emulate-insoles

        self.link = BumbleLink()
        self.args = args
        self.profile = profile
        self.addresses = addresses
        self.insoles: list[EmulatedInsole] = []

    async def start(self) -> None:
        from collector.emulation import EmulatedInsole  # noqa: PLC0415 - bumble is optional; only with --emulate-insoles

        rate = self.args.emulate_rate_hz
        n = 1 if self.profile == "kc16" else (4 if rate == 200 else 2)
        now_s = time.time()
        for side, address in self.addresses.items():
            # counters derived from the wall clock: a restarted process looks like an insole that kept running
            ins = EmulatedInsole(
                self.link, address=address, side=side, profile=self.profile, sample_rate_hz=rate,
                seq_start=(int(now_s * rate) // n * n) % 65536,
                device_time_start_us=int(now_s * 1e6) % (1 << 32) if self.profile == "kc16" else int(now_s % 86400 * 1e6),
                drift_ppm=40.0 if side == "L" else -30.0,
                sent_log_path=str(self.args.emulate_log) if self.args.emulate_log else None,
            )
            await ins.start()
            self.insoles.append(ins)

    async def stop(self) -> None:
        for ins in self.insoles:
            await ins.stop()


def _backends(emulation: _Emulation | None) -> dict:
    if emulation is None:
        return {}
    return {"scanner_backend": emulation.link.scanner_backend, "client_backend": emulation.link.client_backend}


def cmd_scan(args) -> int:
    from collector.sources.ble import scan_insoles  # noqa: PLC0415 - bleak (D-Bus) only when a command runs, not for --help

    async def run() -> int:
        emulation = None
        if args.emulate_insoles:
            emulation = _Emulation(args, args.profile or "kc16", EMULATED_ADDRESSES)
            await emulation.start()
        try:
            found = await scan_insoles(args.timeout_s, profiles=[args.profile] if args.profile else None,
                                       backend=_backends(emulation).get("scanner_backend"))
        finally:
            if emulation:
                await emulation.stop()
        if not found:
            print("No insoles found. Are they switched on and near this computer?")
            return 1
        print(f"{'address':<20} {'profile':<8} {'rssi':>5}  name")
        for f in found:
            print(f"{f.address:<20} {f.profile:<8} {f.rssi:>5}  {f.name or ''}")
        return 0

    return _run(run)


def cmd_pair(args) -> int:
    from collector.sources.ble import read_device_info, scan_insoles  # noqa: PLC0415 - bleak (D-Bus) only when a command runs

    async def run() -> int:
        current = load_settings(args.config, environ={})  # keep environment overrides out of the file
        profile = args.profile or current.profile or "kc16"
        insoles: dict[str, str] = {}
        if args.left:
            insoles["L"] = args.left.upper()
        if args.right:
            insoles["R"] = args.right.upper()
        emulation = None
        if args.emulate_insoles:
            emulation = _Emulation(args, profile, EMULATED_ADDRESSES)
            await emulation.start()
        try:
            if len(insoles) < 2:
                backends = _backends(emulation)
                found = await scan_insoles(args.timeout_s, profiles=[profile], backend=backends.get("scanner_backend"))
                for f in found:
                    if f.address in insoles.values():
                        continue
                    info = await read_device_info(f.address, get_profile(profile), **backends)
                    if info.side and info.side not in insoles:
                        insoles[info.side] = f.address
                        print(f"found the {'left' if info.side == 'L' else 'right'} insole: {f.address}")
        finally:
            if emulation:
                await emulation.stop()
        missing = [s for s in ("L", "R") if s not in insoles]
        settings = CollectorSettings(patient=args.patient, profile=profile, insoles=insoles,
                                     outbox_path=current.outbox_path, outbox_budget_mb=current.outbox_budget_mb)
        path = save_settings(settings.validated(), args.config)
        print(f"paired patient {args.patient}: " + ", ".join(f"{s}={a}" for s, a in sorted(insoles.items())) + f" -> {path}")
        if missing:
            print(f"warning: no {' or '.join('left' if s == 'L' else 'right' for s in missing)} insole found; "
                  "switch it on and run `kinetic pair` again", file=sys.stderr)
            return 2
        return 0

    return _run(run)


def cmd_collect(args) -> int:
    from collector.sources.ble import BleInsoleSource  # noqa: PLC0415 - bleak (D-Bus) only when a command runs (module docstring)

    async def run() -> int:
        settings = load_settings(args.config)
        if args.emulate_insoles and not settings.insoles:  # nothing paired: the emulated insoles' own addresses
            settings = replace(settings, insoles=dict(EMULATED_ADDRESSES))
        settings = settings.validated()
        emulation = None
        if args.emulate_insoles:
            emulation = _Emulation(args, settings.profile, settings.insoles)
            await emulation.start()
        assert settings.patient is not None  # validated() checked it
        sources: list[InsoleSource] = [
            BleInsoleSource(address=settings.insoles[side], side=side, profile=settings.profile, **_backends(emulation))
            for side in SIDES if side in settings.insoles  # validated(): no other keys; SIDES is sorted
        ]
        collector = Collector(
            CollectorConfig(patient=settings.patient, outbox_path=settings.outbox_path,
                            outbox_budget_bytes=settings.outbox_budget_bytes, status_interval_s=args.status_interval_s,
                            metrics_port=args.metrics_port),
            sources, MqttSettings.from_env(),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration_s is not None:
            loop.call_later(args.duration_s, stop.set)
        tty = sys.stderr.isatty()

        def on_status(line: str) -> None:
            sys.stderr.write(("\r\x1b[2K" if tty else "") + line + ("" if tty else "\n"))
            sys.stderr.flush()

        try:
            await collector.run(stop=stop, on_status=on_status)
        finally:
            if emulation:
                await emulation.stop()
        if tty:
            sys.stderr.write("\n")
        print(f"stopped; {len(collector.outbox)} messages wait in the outbox for the broker" if len(collector.outbox)
              else "stopped; everything was delivered to the broker")
        return 0

    return _run(run)


def _run(coro_fn) -> int:
    try:
        return asyncio.run(coro_fn())
    except CollectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InsoleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
