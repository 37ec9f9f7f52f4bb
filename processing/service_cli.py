"""``kinetic process`` — run the processing service against the broker."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading

from insole_common.topics import N_PARTITIONS, partitions_for_worker
from processing.service import ProcessingService
from storage.archive import RawArchive
from storage.health import MetricsServer
from storage.store import PostgresStore, SQLiteStore
from transport.mqtt import MqttSettings

log = logging.getLogger(__name__)

#: the worker process's GIL switch interval (Python's default is 5 ms)
SWITCH_INTERVAL_S = 0.0002


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "process",
        help="subscribe to every patient's insole streams and store sessions, strides and summaries",
        description="Run the processing service: MQTT ingest (QoS 1, persistent session), exactly-once raw "
        "store, session handling and gait analytics into SQLite or PostgreSQL.",
    )
    p.add_argument("--db", default=os.environ.get("KINETIC_DB", "kinetic.sqlite"),
                   help="SQLite database file, or a postgresql:// URL (env KINETIC_DB; default: %(default)s)")
    p.add_argument("--archive", default=os.environ.get("KINETIC_ARCHIVE", "kinetic-archive"),
                   help="raw session archive folder, Parquet partitioned by patient and day "
                   "(env KINETIC_ARCHIVE; default: %(default)s)")
    p.add_argument("--mqtt-url", default=None, help="broker URL, or several comma-separated (a cluster's nodes: failover "
                   "between them) (env KINETIC_MQTT_URL; default mqtt://127.0.0.1:1883)")
    p.add_argument("--worker", default="0/1", metavar="I/N",
                   help=f"this worker's index and the number of workers; the {N_PARTITIONS} topic partitions are "
                   "split among workers (default: %(default)s)")
    p.add_argument("--client-id", default=None,
                   help="MQTT client id of this worker's persistent session (default: a single worker's broker username, "
                   "as the shipped secure broker binds client ids to accounts; else kinetic-processing-I-of-N); "
                   "keep it stable across restarts so that queued messages are delivered; with "
                   "KINETIC_MQTT_SESSION_PER_SUBSCRIPTION=1 (NATS) the sessions are ID-raw-PP and ID-session-PP per partition")
    p.add_argument("--no-live", action="store_true",
                   help="do not publish provisional strides while sessions run (saves CPU; final results are "
                   "computed at session close either way)")
    p.add_argument("--live-in-worker", action="store_true",
                   help="run the provisional stride analysis in the worker process itself instead of in a helper "
                   "process beside it (one process and one core instead of two)")
    p.add_argument("--inactivity-s", type=float, default=300.0,
                   help="close a session after this many seconds without data (default: %(default)s)")
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("KINETIC_METRICS_PORT", "0")) or None,
                   help="serve the service's counters (stored, rejected by reason, late, inbox depth) in the "
                   "Prometheus text format on http://HOST:PORT/metrics (env KINETIC_METRICS_PORT; default: off)")
    p.add_argument("--metrics-host", default=os.environ.get("KINETIC_METRICS_HOST", "127.0.0.1"),
                   help="address of the metrics endpoint (env KINETIC_METRICS_HOST; default: %(default)s)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        index, count = (int(x) for x in args.worker.split("/"))
        partitions = partitions_for_worker(index, count)
    except ValueError as exc:
        raise SystemExit(f"kinetic process: --worker must look like 0/2: {exc}") from None
    # paho's network thread parses messages while this one waits for the database with the GIL released;
    # Python's default 5 ms switch interval leaves the returning thread waiting for the GIL (measured:
    # 0.2 ms raises a worker's rate by about a third, docs/benchmarks.md)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    store = PostgresStore(args.db) if args.db.startswith(("postgresql://", "postgres://")) else SQLiteStore(args.db)
    service = ProcessingService(store, inactivity_s=args.inactivity_s, partitions=None if count == 1 else partitions,
                                live_strides=not args.no_live, live_process=not args.live_in_worker,
                                archive=RawArchive(args.archive))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    mqtt = MqttSettings.from_env(args.mqtt_url)
    shown_db = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", args.db)  # never print a password given in the URL
    print(f"kinetic process: worker {index}/{count} on {mqtt.url}, partitions {partitions}, database {shown_db}", flush=True)
    ready = threading.Event()

    def announce() -> None:
        if ready.wait(60):
            print("ready: subscribed, processing", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    metrics = None if args.metrics_port is None else MetricsServer(service.metrics, port=args.metrics_port,
                                                                    host=args.metrics_host)
    if metrics is not None:
        print(f"metrics: http://{args.metrics_host}:{metrics.port}/metrics", flush=True)
    # one worker: its account's name (the secure broker uses it anyway, use_username_as_clientid); several workers
    # need an account each there (docs/security.md)
    client_id = args.client_id or (count == 1 and mqtt.username) or f"kinetic-processing-{index}-of-{count}"
    try:
        service.run(mqtt, client_id=client_id, stop=stop, ready=ready)
    finally:
        if metrics is not None:
            metrics.close()
    s = service.stats
    print(f"stopped: {s.batches_n} batches, {s.frames_accepted_n} frames stored, {s.frames_duplicate_n} duplicates "
          f"dropped, {s.rejected_n} messages rejected", flush=True)
    return 0
