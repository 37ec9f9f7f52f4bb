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

The root ``kc/v1`` (:data:`DEFAULT_ROOT`) is the contract. A process may move the whole tree under another
root with the environment variable ``KINETIC_TOPIC_ROOT`` (e.g. ``kc-test-1a2b/v1``): every topic built and
every subscription filter made here then uses it, so a test run (tests/conftest.py sets one per run) or a
staging system shares a broker with others without seeing their traffic. :func:`root` is the current root;
``topics.ROOT`` reads the same.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from typing import Literal

from insole_common.errors import TopicError

#: the topic root of the contract (deployments)
DEFAULT_ROOT = "kc/v1"
#: environment variable that moves the topic tree under another root (tests, staging)
ROOT_ENV = "KINETIC_TOPIC_ROOT"
_ROOT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,3}$")
N_PARTITIONS = 16
PATIENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Kind = Literal["raw", "session", "status", "control", "strides", "flags"]
#: QoS for each kind of message
QOS_DATA = 1
QOS_STATUS = 1


def root() -> str:
    """The topic root in use: ``KINETIC_TOPIC_ROOT`` when set, else :data:`DEFAULT_ROOT`."""
    value = os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    if value != DEFAULT_ROOT and not _ROOT_RE.match(value):
        raise TopicError(f"{ROOT_ENV}={value!r} must be 1-4 levels of A-Z a-z 0-9 _ . - (no wildcards)")
    return value


def __getattr__(name: str) -> str:
    if name == "ROOT":  # topics.ROOT: the root in use (read when asked, so a changed environment counts)
        return root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_patient(patient: str) -> str:
    if not isinstance(patient, str) or not PATIENT_RE.match(patient):
        raise TopicError(f"patient pseudonym {patient!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return patient


def partition_of(patient: str) -> int:
    """The partition (0..N_PARTITIONS-1) that carries this patient's topics."""
    return zlib.crc32(check_patient(patient).encode("ascii")) % N_PARTITIONS


def _base(patient: str) -> str:
    return f"{root()}/{partition_of(patient):02d}/{patient}"


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
    """Split a contract topic (under :func:`root`) into its parts; raises TopicError for anything else."""
    prefix = root() + "/"
    if not topic.startswith(prefix):
        raise TopicError(f"topic {topic!r} is not under {prefix}")
    parts = topic[len(prefix):].split("/")  # partition, patient, kind[, sub]
    if len(parts) < 3:
        raise TopicError(f"topic {topic!r} is not under {prefix}")
    pp, patient, kind = parts[0], parts[1], parts[2]
    if not (len(pp) == 2 and pp.isascii() and pp.isdecimal() and int(pp) < N_PARTITIONS):  # not '²³
        raise TopicError(f"topic {topic!r}: partition {pp!r} is not 00..{N_PARTITIONS - 1:02d}")
    check_patient(patient)
    if int(pp) != partition_of(patient):
        raise TopicError(f"topic {topic!r}: patient {patient!r} belongs to partition {partition_of(patient):02d}")
    if kind in _KINDS_WITH_SUB and len(parts) == 4 and parts[3] in _KINDS_WITH_SUB[kind]:
        return TopicInfo(int(pp), patient, kind, parts[3])  # type: ignore[arg-type]
    if kind in _KINDS_PLAIN and len(parts) == 3:
        return TopicInfo(int(pp), patient, kind)  # type: ignore[arg-type]
    raise TopicError(f"topic {topic!r}: unknown kind {'/'.join(parts[2:])!r}")


def partition_filters(kind_suffix: str, partitions: list[int] | range | None = None) -> list[str]:
    """Subscription filters for ``kind_suffix`` (e.g. ``"raw/+"``) in the given partitions (all if None)."""
    if partitions is None:
        return [f"{root()}/+/+/{kind_suffix}"]
    out = []
    for p in partitions:
        if not 0 <= p < N_PARTITIONS:
            raise TopicError(f"partition {p} outside 0..{N_PARTITIONS - 1}")
        out.append(f"{root()}/{p:02d}/+/{kind_suffix}")
    return out


def partitions_for_worker(worker_index: int, n_workers: int) -> list[int]:
    """Static assignment of partitions to ``n_workers`` workers (round-robin by partition number)."""
    if n_workers < 1 or not 0 <= worker_index < n_workers:
        raise TopicError(f"worker {worker_index} of {n_workers} is not a valid assignment")
    return [p for p in range(N_PARTITIONS) if p % n_workers == worker_index]
