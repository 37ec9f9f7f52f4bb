"""Format detection and a single ``read_any`` entry point for all readers."""

from __future__ import annotations

from pathlib import Path

from insole_common.errors import ValidationError
from insole_common.recording import Recording
from processing.readers.gaitndd import read_gaitndd
from processing.readers.gaitpdb import read_gaitpdb
from processing.readers.kinetic import is_kinetic_recording, read_recording
from processing.readers.moticon import is_moticon_export, read_moticon

FORMATS = ("gaitpdb", "gaitndd", "moticon", "kinetic")


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path`` from its shape and first bytes; raises ValidationError if unknown."""
    p = Path(path)
    if not p.exists() and not p.with_suffix(".hea").exists():
        raise ValidationError(f"{p}: no such file or directory", reason="not_found")
    if is_kinetic_recording(p):
        return "kinetic"
    if p.suffix in (".hea", ".let", ".rit", ".ts") or (p.with_suffix(".hea").is_file() and p.with_suffix(".let").is_file()):
        return "gaitndd"
    if p.is_file():
        if is_moticon_export(p):
            return "moticon"
        try:
            with open(p, errors="replace") as fh:
                first = fh.readline().split()
        except OSError as exc:
            raise ValidationError(f"{p}: cannot read ({exc})", reason="bad_file") from exc
        if len(first) == 19:
            return "gaitpdb"
        if not first:
            raise ValidationError(f"{p}: empty file", reason="empty")
    raise ValidationError(f"{p}: unknown recording format; pass --format", reason="unknown_format")


def read_any(path: str | Path, fmt: str = "auto") -> Recording:
    """Read ``path`` as ``fmt`` (or the detected format when ``fmt="auto"``)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    readers = {"gaitpdb": read_gaitpdb, "gaitndd": read_gaitndd, "moticon": read_moticon, "kinetic": read_recording}
    if fmt not in readers:
        raise ValidationError(f"unknown format {fmt!r}; expected auto or one of {FORMATS}", reason="unknown_format")
    return readers[fmt](path)
