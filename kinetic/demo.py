"""``kinetic demo`` — simulated patients through the whole pipeline, with weeks of history.

Three simulated patients walk once a day for ``--days`` days:

  demo-steady    stable gait throughout
  demo-lateral   develops a lateral weight shift over the last two weeks
  demo-short     shortens the stride (and quickens the cadence) over the last two weeks

Every day's walk goes the real way: simulator -> simulated insoles -> collector (clock
alignment, durable outbox) -> MQTT (the configured broker, or an embedded amqtt broker when
none is reachable) -> processing service (exactly-once store, raw archive, gait analytics,
compensation detection) -> SQLite. The simulated insoles drive the collector's clock, so each
session carries its own date.

At the end it prints the weekly summaries, the flags that detection raised and for whom, and
commands that run as printed: the dashboard (as the demo's therapist, with a password made for
this run), a research export of the demo's sessions, and one walk through the analytics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import shlex
import shutil
import socket
import sys
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.service import Collector, CollectorConfig
from collector.sources.base import InsoleSource
from dashboards.auth import add_account, assign_patient
from insole_common import metrics as C
from processing.service import ProcessingService
from research.deid import set_cohort
from simulator import SimulationParams, simulate
from simulator.source import SimulatedInsoleSource
from storage.archive import RawArchive
from storage.flags import active_flags
from storage.patients import stored_frames_n
from storage.store import SQLiteStore
from storage.summaries import weekly_summaries
from transport.mqtt import MqttSettings, broker_reachable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPatient:
    pseudonym: str
    story: str
    #: (lateral shift fw, stride length factor, cadence factor) reached on the last day
    lateral_shift_fw: float = 0.0
    stride_factor: float = 1.0
    cadence_factor: float = 1.0

    def params_for_day(self, day_index: int, days_n: int, walk_s: float, seed: int) -> SimulationParams:
        onset = max(0, days_n - 14)  # changes develop over the last two weeks
        progress = 0.0 if day_index < onset else (day_index - onset + 1) / (days_n - onset)
        return SimulationParams(
            duration_s=walk_s,
            cadence_spm=108.0 * (1 + (self.cadence_factor - 1) * progress),
            stride_length_m=1.32 * (1 + (self.stride_factor - 1) * progress),
            lateral_shift_fw=self.lateral_shift_fw * progress,
            imu=True,
        )


PATIENTS = (
    DemoPatient("demo-steady", "stable gait"),
    DemoPatient("demo-lateral", "lateral weight shift develops", lateral_shift_fw=0.08),
    DemoPatient("demo-short", "stride shortens, cadence rises", stride_factor=0.85, cadence_factor=1.06),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="simulated patients with weeks of history through collector -> MQTT -> processing -> SQLite",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mqtt-url", default=None,
                   help="broker to use if reachable (env KINETIC_MQTT_URL; default mqtt://127.0.0.1:1883); "
                   "otherwise an embedded broker is started")
    p.add_argument("--embedded-broker", action="store_true", help="always use the embedded broker")
    p.add_argument("--out", default="demo-data", help="output folder, replaced on each run (default: %(default)s)")
    p.add_argument("--days", type=int, default=21, help="days of history per patient (default: %(default)s)")
    p.add_argument("--walk-s", type=float, default=60.0, help="length of each daily walk in seconds (default: %(default)s)")
    p.add_argument("--tag", default="", help="suffix for the demo pseudonyms, to run several demos against one broker")
    p.add_argument("--dashboard-port", type=int, default=8080,
                   help="port in the printed dashboard command (default: %(default)s)")
    p.set_defaults(func=run)


class EmbeddedBroker:
    """An amqtt broker on 127.0.0.1 in a background thread (MQTT 3.1.1)."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)

    def _run(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - only when no broker is reachable (it loads a whole MQTT server)

        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config, loop=self._loop)
        try:
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller of start(), which raises it
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> MqttSettings:
        self._thread.start()
        self._started.wait(15)
        if self._error is not None:
            raise RuntimeError(f"the embedded broker did not start: {self._error}") from self._error
        return MqttSettings(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            with contextlib.suppress(Exception):  # shutting down anyway
                fut.result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class _ClockedSource(InsoleSource):
    """Wraps an insole source so that its arrival times drive the collector's clock."""

    def __init__(self, source, clock: list[int]) -> None:
        super().__init__()
        self._source, self._clock = source, clock
        self.side, self.device_id, self.status = source.side, source.device_id, source.status
        self.sample_rate_hz = source.sample_rate_hz

    async def frames(self):
        async for f in self._source.frames():
            self._clock[0] = max(self._clock[0], f.arrival_time_us)
            yield f

    async def aclose(self) -> None:
        await self._source.aclose()


def stream_walk(patient: str, sim, start_us: int, settings: MqttSettings, outbox_dir: Path, session_id: str) -> None:
    """One simulated walk through the collector and the broker."""
    clock = [start_us]
    sources: list[InsoleSource] = [
        _ClockedSource(SimulatedInsoleSource(sim, side, device_id=f"{patient}-{side}", start_time_us=start_us,
                                             seed=zlib.crc32(session_id.encode())), clock)
        for side in ("L", "R")
    ]
    collector = Collector(
        CollectorConfig(patient=patient, outbox_path=outbox_dir / f"outbox-{patient}.sqlite", drain_timeout_s=60),
        sources, settings, client_id=f"demo-collector-{patient}", clock_us=lambda: clock[0],
    )
    asyncio.run(collector.run(session_id=session_id))


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    settings, broker = _broker(args)
    store = SQLiteStore(out / "kinetic.sqlite")
    # the raw archive, as `kinetic process` keeps it: research exports read their samples from it
    service = ProcessingService(store, analyze_on_close=True, archive=RawArchive(out / "archive"))
    service.detection_clock = "data"  # the history is simulated: stamp flags with the sessions' own dates
    stop, ready = threading.Event(), threading.Event()
    worker = threading.Thread(
        target=service.run, args=(settings,),
        kwargs=dict(client_id=f"kinetic-demo-processing-{uuid.uuid4().hex[:6]}", stop=stop, ready=ready, persistent=False),
        daemon=True,
    )
    worker.start()
    if not ready.wait(15):
        print("the processing service could not connect to the broker")
        return 1

    t_start = time.monotonic()
    try:
        expected, sent_frames = _stream_history(args, service, settings, out, t_start)
    finally:
        stop.set()
        worker.join(10)
        if broker is not None:
            broker.stop()

    s = service.stats
    names = _pseudonyms(args.tag)
    print(f"\nprocessed {s.sessions_closed_n}/{expected} sessions: {s.frames_accepted_n} frames stored exactly once, "
          f"{s.frames_duplicate_n} duplicates dropped, {s.rejected_n} messages rejected "
          f"({time.monotonic() - t_start:.0f} s)\n")
    print(weekly_report(store, names))
    print(flags_report(store, names, args.dashboard_port))
    password = demo_therapist(store, names)
    # the demo's patients in a research cohort of their own, labelled with a research secret made for this run
    cohort, research_secret = "demo" + (f"-{args.tag}" if args.tag else ""), secrets.token_urlsafe(32)
    for name in names:
        set_cohort(store, name, cohort, research_secret.encode())
    print(where_to_look(out, password, args.dashboard_port, cohort=cohort, research_secret=research_secret))
    # count this demo's own frames in the database: on a shared broker the service also sees other traffic
    stored = stored_frames_n(store, names)
    ok = s.sessions_closed_n >= expected and stored == sent_frames
    print("OK: every frame the simulated insoles sent was stored exactly once" if ok else
          f"PROBLEM: {sent_frames} frames sent, {stored} stored; {s.sessions_closed_n}/{expected} sessions")
    return 0 if ok else 1


def _pseudonyms(tag: str) -> list[str]:
    return [f"{p.pseudonym}{'-' + tag if tag else ''}" for p in PATIENTS]


def _broker(args: argparse.Namespace) -> tuple[MqttSettings, EmbeddedBroker | None]:
    """The configured broker when reachable (and not ``--embedded-broker``), else a started embedded one."""
    settings = MqttSettings.from_env(args.mqtt_url)
    if not args.embedded_broker and broker_reachable(settings):
        print(f"using the broker at {settings.url}")
        return settings, None
    if not args.embedded_broker:
        print(f"no broker at {settings.url}; starting an embedded one")
    logging.getLogger("amqtt").setLevel(logging.ERROR)  # its internal PUBACK bookkeeping is chatty
    broker = EmbeddedBroker()
    settings = broker.start()
    print(f"embedded broker (amqtt) on {settings.url}")
    return settings, broker


def _stream_history(args: argparse.Namespace, service: ProcessingService, settings: MqttSettings, out: Path,
                    t_start: float) -> tuple[int, int]:
    """Every patient's daily walk for ``args.days`` days, one session at a time; (sessions, frames) sent."""
    today = datetime.now(UTC).date()
    expected = 0
    sent_frames = 0
    for day_index in range(args.days):
        day = today - timedelta(days=args.days - 1 - day_index)
        for k, (base, pseudonym) in enumerate(zip(PATIENTS, _pseudonyms(args.tag), strict=True)):
            patient = replace(base, pseudonym=pseudonym)
            seed = zlib.crc32(f"{patient.pseudonym}/{day}".encode())
            sim = simulate(patient.params_for_day(day_index, args.days, args.walk_s, seed), seed=seed)
            start = datetime(day.year, day.month, day.day, 9 + 2 * k, 0, tzinfo=UTC)
            session_id = f"demo-{patient.pseudonym}-{day:%Y%m%d}"
            stream_walk(patient.pseudonym, sim, int(start.timestamp() * 1e6), settings, out, session_id)
            expected += 1
            sent_frames += int(sum(mask.sum() for mask in sim.truth.delivered.values()))
            # one session at a time: the backlog stays far below a stock broker's
            # per-subscriber queue (Mosquitto drops QoS 1 messages beyond max_queued_messages)
            deadline = time.monotonic() + 60
            while service.stats.sessions_closed_n < expected and time.monotonic() < deadline:
                time.sleep(0.02)
        print(f"  streamed {day}  ({expected} sessions, {time.monotonic() - t_start:.0f} s)", flush=True)
    return expected, sent_frames


def kinetic_command() -> list[str]:
    """How to run ``kinetic`` as this process runs it: the console script beside the running interpreter
    (``.venv/bin/kinetic``), else the interpreter with ``-m kinetic``; ``kinetic`` alone is not always on PATH."""
    script = Path(sys.executable).with_name("kinetic")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "kinetic"]


def _cmd(*words: str | Path, env: dict[str, str] | None = None) -> str:
    """A shell command line: ``env`` assignments, then ``kinetic`` and ``words``, each quoted for the shell."""
    assignments = [f"{k}={v}" for k, v in (env or {}).items()]
    return " ".join(assignments + [shlex.quote(str(w)) for w in [*kinetic_command(), *words]])


def where_to_look(out: Path, password: str, port: int = 8080, *, cohort: str = "demo", research_secret: str = "") -> str:
    """What to run next; every line starting with ``$`` is a command that runs as printed (from any folder)."""
    out = out.resolve()
    db, archive = out / "kinetic.sqlite", out / "archive"
    new_secret = f"$({shlex.quote(sys.executable)} -c 'import secrets; print(secrets.token_urlsafe(48))')"
    dashboard = _cmd("dashboard", "--db", db, "--archive", archive, "--port", str(port),
                     env={"KINETIC_DASHBOARD_SECRET": new_secret})
    export = _cmd("export", "--cohort", cohort, "--db", db, "--archive", archive, "--format", "bids",
                  "--out", out / "export-bids", env={"KINETIC_RESEARCH_SECRET": research_secret})
    walk = f"{_cmd('simulate', '--out', out / 'walk')} && {_cmd('analyze', out / 'walk', '--out', out / 'walk-analysis')}"
    return f"""
Where to look (each $ line runs as printed):
  dashboard   sign in at http://127.0.0.1:{port}/ as demo-therapist with the password {password}
              (made for this run, shown only here)
    $ {dashboard}
  export      the demo's sessions de-identified, samples included (BIDS-Motion; cohort {cohort}, and a
              research secret made for this run: the same secret gives the same research labels)
    $ {export}
  one walk    a simulated recording through the gait analytics
    $ {walk}
  database    {db}  (SQLite: sessions, strides, daily_summaries, flags, raw_batches, ...)
  archive     {archive}  (raw samples of every session, Parquet)
"""


def flags_report(store, patients: list[str], port: int = 8080) -> str:
    """The flags open now for ``patients``: who, which metric and foot, since when, baseline and now, and where
    the therapist sees them."""
    flags = active_flags(store, patients)
    if not flags:
        return "Flags: none raised for " + ", ".join(patients) + "\n"
    lines = [f"Flags raised ({len(flags)}, still open):"]
    for f in flags:
        m = C.metric(f["metric"])
        side = f.get("side") or (f["metric"][-1] if f["metric"][-2:] in ("_L", "_R") else None)
        foot = {"L": "left foot", "R": "right foot"}.get(side or "", "both feet")
        values = "" if f["baseline"] is None or f["current"] is None else (
            f": baseline {f['baseline']:.{m.decimals + 1}f}, now {f['current']:.{m.decimals + 1}f} {m.unit}")
        kind = str(f["kind"]).replace("_", " ")
        lines.append(f"  {f['patient']:<22} {kind:<18} {m.label} ({foot}) since {f['since_day'] or f['day']}{values}")
    flagged = sorted({f["patient"] for f in flags})
    lines.append("  see them: sign in as demo-therapist (below), then open " + ", ".join(
        f"http://127.0.0.1:{port}/therapist/patients/{p}" for p in flagged))
    quiet = [p for p in patients if p not in flagged]
    if quiet:
        lines.append("  no flag for " + ", ".join(quiet))
    return "\n".join(lines) + "\n"


def demo_therapist(store, patients: list[str]) -> str:
    """A therapist account for this demo database, assigned the demo patients; returns its random password."""
    store.migrate()
    password = secrets.token_urlsafe(12)
    add_account(store, "demo-therapist", "therapist", password, display_name="Demo therapist")
    for patient in patients:
        assign_patient(store, "demo-therapist", patient)
    return password


#: the weekly report's metric columns, and their shorter headings
REPORT_METRICS = (C.CADENCE_STEPS_PER_MIN, C.STRIDE_LENGTH_M, C.STRIDE_TIME_S, C.COP_ML_MEAN_FW, C.LATERAL_LOAD_FRACTION,
                  C.HEEL_LOAD_FRACTION)


def weekly_report(store, patients: list[str] | None = None) -> str:
    """Per patient and ISO week, the stored weekly summaries (:mod:`processing.summaries`): each metric the
    median of the week's daily medians; ``days_n`` and ``strides_n`` the week's totals."""
    weekly = weekly_summaries(store, patients)
    if weekly.empty:
        return "(no weekly summaries)"
    cols = ["days_n", "strides_n"] + [c for c in REPORT_METRICS if c in weekly]
    table = weekly.set_index(["patient", "week"])[cols].round(3)
    table.columns = [c.replace("cadence_steps_per_min", "cadence_spm").replace("_fraction", "_frac") for c in table.columns]
    return "Weekly summaries per patient (metrics: medians of the daily medians; days_n, strides_n: totals):\n" \
        + table.to_string()
