"""The MQTT topic tree (contract v1). Every publisher and subscriber builds topics here.

::

    kc/v1/{pp}/{patient}/raw/{side}        binary batches (codec.py), QoS 1, not retained
    kc/v1/{pp}/{patient}/session           JSON session start/stop, QoS 1
    kc/v1/{pp}/{patient}/status/collector  JSON collector online/offline, retained, also the last will
    kc/v1/{pp}/{patient}/status/{side}     JSON insole status (connected, battery, loss), retained
    kc/v1/{pp}/{patient}/control           JSON commands to the patient's collector, QoS 1
    kc/v1/{pp}/{patient}/strides           JSON per-stride results from processing, QoS 1
    kc/v1/{pp}/{patient}/flags             JSON compensation flags (alerts) from processing, QoS 1

``{pp}`` is the patient's partition, two digits ``00``..``15``: CRC-32 of the
pseudonym modulo :data:`N_PARTITIONS`. Everything of one patient (both insoles
and their session messages) shares one partition, so a processing worker that
owns a partition sees each device's stream whole and in order; workers split
the partitions among themselves (docs/architecture.md).

``{patient}`` is a pseudonym, never a name: 1-64 characters of ``[A-Za-z0-9_-]``.
``{side}`` is ``L`` or ``R``.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Literal

from insole_common.errors import TopicError

ROOT = "kc/v1"
N_PARTITIONS = 16
PATIENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Kind = Literal["raw", "session", "status", "control", "strides", "flags"]
#: QoS for each kind of message
QOS_DATA = 1
QOS_STATUS = 1


def check_patient(patient: str) -> str:
    if not isinstance(patient, str) or not PATIENT_RE.match(patient):
        raise TopicError(f"patient pseudonym {patient!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return patient


def partition_of(patient: str) -> int:
    """The partition (0..N_PARTITIONS-1) that carries this patient's topics."""
    return zlib.crc32(check_patient(patient).encode("ascii")) % N_PARTITIONS


def _base(patient: str) -> str:
    return f"{ROOT}/{partition_of(patient):02d}/{patient}"


def _side(side: str) -> str:
    if side not in ("L", "R"):
        raise TopicError(f"side must be 'L' or 'R', got {side!r}")
    return side


def raw_topic(patient: str, side: str) -> str:
    return f"{_base(patient)}/raw/{_side(side)}"


def session_topic(patient: str) -> str:
    return f"{_base(patient)}/session"


def collector_status_topic(patient: str) -> str:
    return f"{_base(patient)}/status/collector"


def insole_status_topic(patient: str, side: str) -> str:
    return f"{_base(patient)}/status/{_side(side)}"


def control_topic(patient: str) -> str:
    return f"{_base(patient)}/control"


def strides_topic(patient: str) -> str:
    return f"{_base(patient)}/strides"


def flags_topic(patient: str) -> str:
    return f"{_base(patient)}/flags"


@dataclass(frozen=True)
class TopicInfo:
    partition: int
    patient: str
    kind: Kind
    #: ``L``/``R`` for raw and insole status, ``collector`` for collector status, else None
    sub: str | None = None


_KINDS_WITH_SUB = {"raw": ("L", "R"), "status": ("L", "R", "collector")}
_KINDS_PLAIN = ("session", "control", "strides", "flags")


def parse_topic(topic: str) -> TopicInfo:
    """Split a contract topic into its parts; raises TopicError for anything else."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        raise TopicError(f"topic {topic!r} is not under {ROOT}/")
    pp, patient, kind = parts[2], parts[3], parts[4]
    if not (len(pp) == 2 and pp.isascii() and pp.isdecimal() and int(pp) < N_PARTITIONS):  # not '²³
        raise TopicError(f"topic {topic!r}: partition {pp!r} is not 00..{N_PARTITIONS - 1:02d}")
    check_patient(patient)
    if int(pp) != partition_of(patient):
        raise TopicError(f"topic {topic!r}: patient {patient!r} belongs to partition {partition_of(patient):02d}")
    if kind in _KINDS_WITH_SUB and len(parts) == 6 and parts[5] in _KINDS_WITH_SUB[kind]:
        return TopicInfo(int(pp), patient, kind, parts[5])  # type: ignore[arg-type]
    if kind in _KINDS_PLAIN and len(parts) == 5:
        return TopicInfo(int(pp), patient, kind)  # type: ignore[arg-type]
    raise TopicError(f"topic {topic!r}: unknown kind {'/'.join(parts[4:])!r}")


def partition_filters(kind_suffix: str, partitions: list[int] | range | None = None) -> list[str]:
    """Subscription filters for ``kind_suffix`` (e.g. ``"raw/+"``) in the given partitions (all if None)."""
    if partitions is None:
        return [f"{ROOT}/+/+/{kind_suffix}"]
    out = []
    for p in partitions:
        if not 0 <= p < N_PARTITIONS:
            raise TopicError(f"partition {p} outside 0..{N_PARTITIONS - 1}")
        out.append(f"{ROOT}/{p:02d}/+/{kind_suffix}")
    return out


def partitions_for_worker(worker_index: int, n_workers: int) -> list[int]:
    """Static assignment of partitions to ``n_workers`` workers (round-robin by partition number)."""
    if n_workers < 1 or not 0 <= worker_index < n_workers:
        raise TopicError(f"worker {worker_index} of {n_workers} is not a valid assignment")
    return [p for p in range(N_PARTITIONS) if p % n_workers == worker_index]
