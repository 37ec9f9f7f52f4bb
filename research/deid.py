"""De-identification of everything a researcher receives.

What leaves the clinic in an export (``research.export``) or a dashboard download:

* **subjects** by their research label: ``S`` + 12 hex digits of a keyed hash (HMAC-SHA256)
  of the pseudonym with the deployment's secret ``KINETIC_RESEARCH_SECRET``
  (:func:`research_secret`), stored in ``research_subjects``. The same patient gets the same
  label in every export, from SQLite or PostgreSQL alike; without the secret nobody can compute
  a label from a pseudonym. A recording exported with ``--recording`` is labelled the same way
  from its identity, the SHA-256 of its bytes (:func:`recording_identity`), so exporting it
  twice gives the same labels. Labels stored before (random, issue 7) are kept. BIDS labels
  must be alphanumeric; ours are (:func:`bids_label`).
* **sessions** by their research label (``R`` + 16 hex digits, the same keyed hash of the
  session id).
* **dates** shifted per subject by a whole number of weeks (so weekdays and every interval
  between that subject's sessions are kept) that moves them 100-125 years back, drawn from the
  same keyed hash (:func:`keyed_date_shift_days`); the shift is stored with the label and
  never exported.
* **times within a session** as seconds since the session's start.

Removed: the pseudonym, the session id (it holds the collector's start time), device
ids (serial numbers / Bluetooth addresses), device frame counters (they run across
sessions and would link them; ``frame_index`` counts from the session's first frame
instead), absolute timestamps, account names, notes and flags. :func:`manifest`
writes this list into every export.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from insole_common.errors import InsoleError
from storage import research as label_tables
from storage.store import Store

#: the deployment's research secret (at least MIN_SECRET_CHARS characters), never in the repository
SECRET_ENV = "KINETIC_RESEARCH_SECRET"  # noqa: S105 - the name of the environment variable, not a secret
MIN_SECRET_CHARS = 32
#: hex digits of the keyed hash in a subject / session label
SUBJECT_HEX_N = 12
SESSION_HEX_N = 16

#: shifts are whole weeks in this range (days, negative = into the past)
SHIFT_WEEKS_MIN = 5218  # ~100 years
SHIFT_WEEKS_MAX = 6522  # ~125 years

#: what an export never contains, and why (written into manifest.json)
REMOVED = {
    "patient_pseudonym": "replaced by a research subject label (keyed hash, see labels)",
    "session_id": "replaced by a research session label (keyed hash; the id holds the collector's start time)",
    "device_id": "removed: device serial numbers and Bluetooth addresses identify the hardware",
    "device_frame_counter": "replaced by frame_index, counted from the session's first frame on each foot",
    "absolute_timestamps": "replaced by seconds since the session's start (t_s)",
    "accounts_notes_flags": "not exported: therapist and patient accounts, clinical notes and flags",
}
SHIFTED = {
    "dates": "every date and date-time is shifted by a per-subject whole number of weeks (from the keyed hash) into "
             "the years 1900-1926; weekdays and all intervals within a subject are kept; the shift is not exported",
}


class ResearchSecretError(InsoleError):
    """The deployment's research secret is missing or too short."""

    reason = "research_secret"


def configured_research_secret(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The deployment's research secret when one is set (else None); ResearchSecretError when it is too short."""
    return research_secret(environ) if (os.environ if environ is None else environ).get(SECRET_ENV) else None


def research_secret(environ: Mapping[str, str] | None = None) -> bytes:
    """The deployment's research secret (``KINETIC_RESEARCH_SECRET``), as bytes; ResearchSecretError when it is
    missing or too short."""
    value = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if len(value) < MIN_SECRET_CHARS:
        raise ResearchSecretError(
            f"set {SECRET_ENV} to the deployment's research secret, at least {MIN_SECRET_CHARS} characters, e.g. "
            f"python3 -c 'import secrets; print(secrets.token_urlsafe(32))' (keep it: the same secret gives the same "
            "research labels; never commit it)")
    return value.encode("utf-8")


def _keyed(secret: bytes, kind: str, identity: str) -> bytes:
    return hmac.new(secret, f"kinetic-research/{kind}\0{identity}".encode(), hashlib.sha256).digest()


def subject_label(secret: bytes, identity: str) -> str:
    """``S`` + 12 hex digits of HMAC-SHA256(secret, identity): a pseudonym's or a recording's research label."""
    return "S" + _keyed(secret, "subject", identity).hex()[:SUBJECT_HEX_N]


def session_label(secret: bytes, identity: str) -> str:
    """``R`` + 16 hex digits of HMAC-SHA256(secret, identity): a session id's or a recording's session label."""
    return "R" + _keyed(secret, "session", identity).hex()[:SESSION_HEX_N]


def keyed_date_shift_days(secret: bytes, identity: str) -> int:
    """The subject's date shift in days (a negative whole number of weeks, ~100-125 years), from the keyed hash."""
    weeks_n = SHIFT_WEEKS_MAX - SHIFT_WEEKS_MIN + 1
    return -7 * (SHIFT_WEEKS_MIN + int.from_bytes(_keyed(secret, "date-shift", identity)[:8], "big") % weeks_n)


def random_date_shift_days() -> int:
    """A fresh random shift in days (a negative whole number of weeks, ~100-125 years)."""
    return -7 * (SHIFT_WEEKS_MIN + secrets.randbelow(SHIFT_WEEKS_MAX - SHIFT_WEEKS_MIN + 1))


def recording_identity(path: str | Path) -> str:
    """The SHA-256 (hex) of a recording's bytes; of a folder, of its files' relative paths and bytes in order."""
    root = Path(path)
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        if f is not root:
            digest.update(str(f.relative_to(root)).encode() + b"\0")
        with f.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


class _Labeller:
    """Label and shift makers for :mod:`storage.research`: keyed with the secret, or random without one (only
    where no secret is configured and none is required, e.g. a dashboard's researcher page)."""

    def __init__(self, secret: bytes | None) -> None:
        self.secret = secret if secret is not None else configured_research_secret()

    def subject(self, patient: str) -> str:
        return subject_label(self.secret, patient) if self.secret else f"S{secrets.token_hex(SUBJECT_HEX_N // 2)}"

    def session(self, session_id: str) -> str:
        return session_label(self.secret, session_id) if self.secret else f"R{secrets.token_hex(SESSION_HEX_N // 2)}"

    def shift(self, patient: str) -> int:
        return keyed_date_shift_days(self.secret, patient) if self.secret else random_date_shift_days()


def ensure_subject_labels(store: Store, secret: bytes | None = None) -> None:
    """Give every patient without one a research label and date shift (idempotent); keyed with ``secret`` (None:
    ``KINETIC_RESEARCH_SECRET`` when set, else random)."""
    labeller = _Labeller(secret)
    label_tables.ensure_subject_labels(store, label=labeller.subject, shift_days=labeller.shift)


def ensure_labels(store: Store, secret: bytes | None = None) -> None:
    """Research labels for every patient and every closed session that has none yet (idempotent)."""
    labeller = _Labeller(secret)
    label_tables.ensure_subject_labels(store, label=labeller.subject, shift_days=labeller.shift)
    label_tables.ensure_session_labels(store, label=labeller.session)


def set_cohort(store: Store, patient: str, cohort: str, secret: bytes | None = None) -> None:
    """Put ``patient`` into ``cohort`` (creating its research label when new)."""
    labeller = _Labeller(secret)
    label_tables.set_cohort(store, patient, cohort, label=labeller.subject, shift_days=labeller.shift)


def bids_label(label: str) -> str:
    """A research label as a BIDS label (alphanumeric only)."""
    out = "".join(ch for ch in label if ch.isalnum())
    if not out:
        raise ValueError(f"label {label!r} has no alphanumeric characters")
    return out


@dataclass(frozen=True)
class Subject:
    """One exported subject: the research label and the (secret) date shift."""

    label: str
    cohort: str
    date_shift_days: int

    def shift_time_us(self, time_us: int) -> datetime:
        """A real timestamp (us since the epoch, UTC) as the shifted, naive UTC date-time."""
        real = datetime.fromtimestamp(time_us / 1e6, tz=UTC).replace(tzinfo=None)
        return real + timedelta(days=self.date_shift_days)

    def shift_day(self, day: str) -> str:
        return (date.fromisoformat(day) + timedelta(days=self.date_shift_days)).isoformat()


LABELS = ("keyed hash (HMAC-SHA256) with the deployment's research secret, of the pseudonym and session id (a "
          "recording: of its SHA-256); the same source gets the same labels, and without the secret no label can be "
          "computed from an identifier")


def manifest(*, fmt: str, subjects_n: int, sessions_n: int, software: str, files: list[str], source: dict,
             extra: dict | None = None) -> dict:
    """The ``manifest.json`` of an export: its source (never an identifier), what was removed or shifted, and what
    is inside."""
    return {
        "format": fmt,
        "software": software,
        "source": source,
        "subjects_n": subjects_n,
        "sessions_n": sessions_n,
        "deidentification": {"removed": REMOVED, "shifted": SHIFTED, "labels": LABELS},
        "time_base": "t_s: seconds since the session's start (when the collector opened the session), on the "
                     "collector's clock to which both insoles are aligned; event and stride times use the same origin",
        "files": sorted(files),
        **(extra or {}),
    }


__all__ = [
    "LABELS",
    "REMOVED",
    "SECRET_ENV",
    "SHIFTED",
    "ResearchSecretError",
    "Subject",
    "bids_label",
    "configured_research_secret",
    "ensure_labels",
    "ensure_subject_labels",
    "keyed_date_shift_days",
    "manifest",
    "random_date_shift_days",
    "recording_identity",
    "research_secret",
    "session_label",
    "set_cohort",
    "subject_label",
]
