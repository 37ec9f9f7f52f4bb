"""JSON control and status messages (contract v1), validated with pydantic.

Every message is a UTF-8 JSON object with ``"v": 1`` and a ``"type"``. Times are
integers in microseconds since the Unix epoch on the collector's time base
(``*_us``). Unknown fields are rejected so that typos surface at once.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError as PydanticValidationError

from insole_common.errors import ControlMessageError
from insole_common.topics import check_patient

CONTROL_VERSION = 1
MAX_MESSAGE_BYTES = 1_000_000


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    v: Literal[1] = 1

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class SessionMessage(_Message):
    """Published by the collector on ``.../session`` when recording starts or stops."""

    type: Literal["session"] = "session"
    event: Literal["start", "stop"]
    session_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    patient: str
    time_us: int
    #: device id per side, e.g. {"L": "kc-0001", "R": "kc-0002"}
    devices: dict[Literal["L", "R"], str] = Field(default_factory=dict)
    reason: str | None = None
    #: on a stop: device id -> one past the last sequence number sent in the session, so that the processing
    #: service waits for batches a broker delivers after the stop (NATS orders per subscription only).
    #: Optional (collectors before it send none); a worker that predates it rejects a stop that carries it.
    ends: dict[str, Annotated[int, Field(ge=0, le=2**63 - 1)]] | None = Field(default=None, max_length=8)

    def model_post_init(self, _ctx) -> None:
        check_patient(self.patient)


class CollectorStatus(_Message):
    """Retained on ``.../status/collector``; the broker publishes ``online=false`` as last will."""

    type: Literal["collector_status"] = "collector_status"
    online: bool
    time_us: int | None = None
    software: str | None = None
    outbox_batches_n: int | None = Field(default=None, ge=0)
    outbox_fill_fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    #: the gateway's disk refuses writes: recordings are kept in memory (and still sent) until it has room again
    storage_full: bool | None = None
    #: frames the collector dropped since it started (its outbox or, with storage_full, its memory was full)
    dropped_frames_n: int | None = Field(default=None, ge=0)


class InsoleStatus(_Message):
    """Retained on ``.../status/{side}``."""

    type: Literal["insole_status"] = "insole_status"
    side: Literal["L", "R"]
    device_id: str | None = None
    connected: bool
    time_us: int
    battery_pct: float | None = Field(default=None, ge=0.0, le=100.0)
    sample_rate_hz: float | None = Field(default=None, ge=0.0)
    #: fraction of expected frames that never arrived in the last status window
    loss_fraction: float | None = Field(default=None, ge=0.0, le=1.0)


class StrideRecord(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    side: Literal["L", "R"]
    heel_strike_s: float
    toe_off_s: float
    next_heel_strike_s: float
    stride_time_s: float
    stance_time_s: float
    swing_time_s: float


class StridesMessage(_Message):
    """Published by processing on ``.../strides``; stride times are on the collector time base (Unix s)."""

    type: Literal["strides"] = "strides"
    session_id: str
    strides: list[StrideRecord]


class FlagMessage(_Message):
    """Published by processing on ``.../flags`` when a compensation flag is raised or cleared."""

    type: Literal["flag"] = "flag"
    patient: str
    metric: str
    kind: str
    state: Literal["raised", "cleared", "improved"]
    baseline: float
    current: float
    threshold: float
    effect_size: float
    days_n: int = Field(ge=0)
    time_us: int


class CommandMessage(_Message):
    """Sent to a collector on ``.../control``."""

    type: Literal["command"] = "command"
    command: Literal["start_session", "stop_session", "status"]
    time_us: int | None = None


AnyMessage = Annotated[
    SessionMessage | CollectorStatus | InsoleStatus | StridesMessage | FlagMessage | CommandMessage,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter = TypeAdapter(AnyMessage)


def parse_message(payload: bytes | str):
    """Parse and validate any contract JSON message; raises ControlMessageError saying what is wrong."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ControlMessageError(f"message is {len(payload)} bytes; the limit is {MAX_MESSAGE_BYTES}",
                                  reason="too_large")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlMessageError(f"not valid UTF-8 JSON: {exc}", reason="bad_json") from exc
    if not isinstance(obj, dict):
        raise ControlMessageError(f"expected a JSON object, got {type(obj).__name__}", reason="bad_json")
    if obj.get("v") != CONTROL_VERSION:
        raise ControlMessageError(f"unsupported message version {obj.get('v')!r}; expected {CONTROL_VERSION}",
                                  reason="bad_version")
    try:
        return _ADAPTER.validate_python(obj)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "message"
        raise ControlMessageError(f"{where}: {first['msg']}", reason="invalid_message") from exc
    except ControlMessageError:
        raise
    except ValueError as exc:  # TopicError from check_patient
        raise ControlMessageError(str(exc), reason="invalid_message") from exc
