"""``kinetic export``: de-identified research exports (Parquet, CSV, BIDS-Motion).

Examples::

    kinetic export --session s20261103T081500-3fa9c1 --format bids --out exports/one-session
    kinetic export --patient demo-lateral-1a2b --from 2026-11-01 --to 2026-11-21 --format parquet --out exports/p1
    kinetic export --cohort pilot --format csv --out exports/pilot-csv
    kinetic export --recording ../shared/data/physionet-gaitpdb/GaCo01_01.txt --format bids --out exports/gaco01

Sessions come from the processing service's database (--db / --dsn, as for ``kinetic
dashboard``; it must exist) and raw archive (--archive); --recording converts one file any
analytics reader opens instead. Research labels are a keyed hash with the deployment's secret
KINETIC_RESEARCH_SECRET (required): the same patient, session or recording gets the same
labels in every export. What de-identification removes and shifts, and the export's source,
are written to its manifest.json (docs/export.md). Refused (exit status 2): sessions whose
frames the database holds but the archive lacks (unless --allow-missing-samples), and a
BIDS-Motion export of a session without samples.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from insole_common.errors import InsoleError
from processing.readers.auto import read_any
from research.deid import recording_identity, research_secret
from research.export import (
    recording_sessions,
    select_sessions,
    software_version,
    write_export,
)
from research.provenance import database_source, recording_source
from storage.archive import RawArchive
from storage.open import open_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="de-identified research export of raw sessions, strides and weekly summaries",
                       description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--session", help="one session (its id in the processing database)")
    what.add_argument("--patient", help="every session of one patient (pseudonym)")
    what.add_argument("--cohort", help="every session of the patients in a research cohort")
    what.add_argument("--all", action="store_true", help="every closed session")
    what.add_argument("--recording", type=Path, help="convert one recording file or folder instead of the database")
    p.add_argument("--from", dest="from_day", metavar="YYYY-MM-DD", help="first day of sessions (inclusive; patient's time zone)")
    p.add_argument("--to", dest="to_day", metavar="YYYY-MM-DD", help="last day of sessions (inclusive; the patient's time zone)")
    p.add_argument("--format", choices=("parquet", "csv", "bids"), default="parquet", help="default: %(default)s")
    p.add_argument("--out", type=Path, required=True, help="export folder to create (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (atomically, at the end)")
    p.add_argument("--db", default=None, help="SQLite database of the processing service (env KINETIC_DB)")
    p.add_argument("--dsn", default=None, help="PostgreSQL DSN instead of --db (env KINETIC_DATABASE_URL)")
    p.add_argument("--pg-schema", default=None, help="PostgreSQL schema (default public)")
    p.add_argument("--archive", default=os.environ.get("KINETIC_ARCHIVE", "kinetic-archive"),
                   help="raw session archive of the processing service (env KINETIC_ARCHIVE; default: %(default)s)")
    p.add_argument("--input-format", default="auto", choices=("auto", "gaitpdb", "gaitndd", "moticon", "kinetic"),
                   help="reader for --recording (default: %(default)s)")
    p.add_argument("--allow-missing-samples", action="store_true",
                   help="export sessions whose samples the archive lacks, without samples (Parquet, CSV; the "
                   "manifest counts them) instead of refusing")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar (default: when stderr is a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        secret = research_secret()
        if args.recording is not None:
            recording = read_any(args.recording, args.input_format)
            identity = recording_identity(args.recording)
            chosen = recording_sessions(recording, secret=secret, identity=identity)
            source = recording_source(args.recording, identity, recording.source_format)
        else:
            store = open_store(db=args.db, dsn=args.dsn, pg_schema=args.pg_schema, create=False)
            filters = dict(session=args.session, patient=args.patient, cohort=args.cohort, from_day=args.from_day,
                           to_day=args.to_day)
            chosen = select_sessions(store, RawArchive(args.archive), secret=secret, **filters)
            source = database_source(store.DIALECT, **filters)
        result = write_export(chosen, args.out, args.format, software=software_version(), overwrite=args.overwrite,
                              progress=args.progress, source=source, allow_missing_samples=args.allow_missing_samples)
    except (InsoleError, FileNotFoundError, OSError) as exc:
        print(f"kinetic export: {exc}", file=sys.stderr)
        return 2
    print(f"kinetic export: {result.sessions_n} session(s) of {result.subjects_n} subject(s), "
          f"{result.rows_n} samples, {len(result.files)} files -> {result.out} ({args.format})")
    if result.sessions_without_samples_n:
        print(f"kinetic export: warning: {result.sessions_without_samples_n} session(s) without samples "
              "(see sessions_without_samples_n in manifest.json)", file=sys.stderr)
    return 0
