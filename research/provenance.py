"""Where an export comes from, and whether it holds what its sources promise.

:func:`database_source` and :func:`recording_source` describe an export's source for its
``manifest.json`` without identifying anybody: the kind of database and which filters chose
the sessions (never a pseudonym, session id or real date), or a recording's file name and
SHA-256. :func:`check_samples` refuses an export that would silently lack samples: sessions whose
frames the database holds but the raw archive does not (a wrong ``--archive``), and any BIDS-Motion
export in which a session has no motion data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from insole_common.errors import InsoleError


class ExportError(InsoleError):
    """The export cannot be made as asked (nothing selected, output exists, unreadable source, missing samples)."""

    reason = "export"


def database_source(dialect: str, *, session: str | None = None, patient: str | None = None, cohort: str | None = None,
                    from_day: str | None = None, to_day: str | None = None) -> dict:
    """The manifest's ``source`` for sessions chosen from a database (``dialect`` sqlite or postgres)."""
    chosen: dict[str, str] = {}
    if session is not None:
        chosen["session"] = "one session (its id is not exported)"
    if patient is not None:
        chosen["patient"] = "every session of one patient (the pseudonym is not exported)"
    if cohort is not None:
        chosen["cohort"] = cohort
    if session is None and patient is None and cohort is None:
        chosen["all"] = "every closed session"
    for key, day in (("from_day", from_day), ("to_day", to_day)):
        if day is not None:
            chosen[key] = "given (real days are not exported)"
    return {"kind": "database", "database": {"sqlite": "SQLite", "postgres": "PostgreSQL"}.get(dialect, dialect),
            "samples": "raw session archive of the processing service", "selection": chosen}


def recording_source(path: str | Path, sha256: str, source_format: str) -> dict:
    """The manifest's ``source`` for one converted recording: its file (or folder) name, SHA-256 and format."""
    return {"kind": "recording", "file": Path(path).name, "sha256": sha256, "format": source_format}


def check_samples(labels: Sequence[str], rows_n: Sequence[int], stored_n: Sequence[int | None], feet_rows_n:
                  Sequence[Sequence[int]], fmt: str, *, allow_missing_samples: bool = False) -> int:
    """Refuse (ExportError) an export that would lack samples it should hold; returns how many sessions have none.

    Per session: its research label, the samples its sources give (``rows_n``), the frame numbers the database
    holds for it (``stored_n``; None: not from a database) and the rows per foot (``feet_rows_n``).
    """
    missing = [label for label, n, stored in zip(labels, rows_n, stored_n, strict=True) if n == 0 and (stored or 0) > 0]
    if missing and not allow_missing_samples:
        raise ExportError(
            f"{len(missing)} of {len(labels)} sessions have frames in the database but no samples in the raw archive "
            f"(research session {missing[0]}{' and others' if len(missing) > 1 else ''}): name the processing "
            "service's archive with --archive (env KINETIC_ARCHIVE), or pass --allow-missing-samples to export their "
            "tables without samples")
    incomplete = [label for label, feet in zip(labels, feet_rows_n, strict=True) if not feet or min(feet) == 0]
    if fmt == "bids" and incomplete:
        raise ExportError(
            f"BIDS-Motion needs every session's motion data (motion.tsv and channels.tsv for each insole), but "
            f"{len(incomplete)} of {len(labels)} sessions have no samples (research session {incomplete[0]}"
            f"{' and others' if len(incomplete) > 1 else ''}): export them as Parquet or CSV, or choose sessions with "
            "samples")
    return sum(1 for n in rows_n if n == 0)


__all__ = ["ExportError", "check_samples", "database_source", "recording_source"]
