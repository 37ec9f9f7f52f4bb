"""The collector's configuration file (TOML) and its environment overrides.

Default location ``~/.config/kinetic/collector.toml`` (or ``$KINETIC_COLLECTOR_CONFIG``)::

    patient = "p-7f3a"                 # the patient's pseudonym, never a name
    profile = "kc16"                   # kc16 (open profile) or orphe
    outbox_path = "~/.local/share/kinetic/outbox.sqlite"
    outbox_budget_mb = 512

    [insoles.L]
    address = "F0:00:00:00:00:01"
    [insoles.R]
    address = "F0:00:00:00:00:02"

Environment variables win over the file: ``KINETIC_PATIENT``, ``KINETIC_PROFILE``,
``KINETIC_INSOLE_L``, ``KINETIC_INSOLE_R``, ``KINETIC_OUTBOX_PATH``,
``KINETIC_OUTBOX_BUDGET_MB``. The broker comes from ``KINETIC_MQTT_URL`` and
friends (``transport.mqtt``), never from this file, so no password lands in it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from collector.errors import ConfigError
from collector.profiles import PROFILES
from insole_common.errors import TopicError
from insole_common.topics import check_patient

DEFAULT_PATH = Path("~/.config/kinetic/collector.toml")
DEFAULT_OUTBOX = Path("~/.local/share/kinetic/outbox.sqlite")


def default_config_path() -> Path:
    return Path(os.environ.get("KINETIC_COLLECTOR_CONFIG") or DEFAULT_PATH).expanduser()


@dataclass(frozen=True)
class CollectorSettings:
    patient: str | None = None
    profile: str = "kc16"
    #: side ("L"/"R") -> Bluetooth address
    insoles: dict[str, str] = field(default_factory=dict)
    outbox_path: Path = DEFAULT_OUTBOX
    outbox_budget_mb: float = 512.0

    @property
    def outbox_budget_bytes(self) -> int:
        return int(self.outbox_budget_mb * 1024 * 1024)

    def validated(self) -> CollectorSettings:
        """Check everything ``kinetic collect`` needs; raise ConfigError saying what is missing."""
        if not self.patient:
            raise ConfigError("no patient pseudonym: run `kinetic pair --patient ...` or set KINETIC_PATIENT")
        try:
            check_patient(self.patient)
        except TopicError as exc:
            raise ConfigError(str(exc)) from exc
        if self.profile not in PROFILES:
            raise ConfigError(f"unknown profile {self.profile!r}; known: {sorted(PROFILES)}")
        if not self.insoles:
            raise ConfigError("no insoles paired: run `kinetic pair` or set KINETIC_INSOLE_L / KINETIC_INSOLE_R")
        for side in self.insoles:
            if side not in ("L", "R"):
                raise ConfigError(f"insole side must be L or R, got {side!r}")
        if self.outbox_budget_mb <= 0:
            raise ConfigError("outbox_budget_mb must be > 0")
        return self


def load_settings(path: Path | None = None, *, environ: dict[str, str] | None = None) -> CollectorSettings:
    """Read the file (if it exists), then apply environment overrides."""
    env = os.environ if environ is None else environ
    path = path or default_config_path()
    data: dict = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"patient", "profile", "insoles", "outbox_path", "outbox_budget_mb"}
    if unknown:
        raise ConfigError(f"{path}: unknown settings {sorted(unknown)}")
    insoles = {side: str(v["address"]) for side, v in (data.get("insoles") or {}).items() if isinstance(v, dict)}
    settings = CollectorSettings(
        patient=data.get("patient"),
        profile=data.get("profile", "kc16"),
        insoles=insoles,
        outbox_path=Path(data.get("outbox_path", DEFAULT_OUTBOX)).expanduser(),
        outbox_budget_mb=float(data.get("outbox_budget_mb", 512.0)),
    )
    over: dict = {}
    if env.get("KINETIC_PATIENT"):
        over["patient"] = env["KINETIC_PATIENT"]
    if env.get("KINETIC_PROFILE"):
        over["profile"] = env["KINETIC_PROFILE"]
    if env.get("KINETIC_OUTBOX_PATH"):
        over["outbox_path"] = Path(env["KINETIC_OUTBOX_PATH"]).expanduser()
    if env.get("KINETIC_OUTBOX_BUDGET_MB"):
        try:
            over["outbox_budget_mb"] = float(env["KINETIC_OUTBOX_BUDGET_MB"])
        except ValueError as exc:
            raise ConfigError(f"KINETIC_OUTBOX_BUDGET_MB must be a number: {exc}") from exc
    ins = dict(settings.insoles)
    for side in ("L", "R"):
        if env.get(f"KINETIC_INSOLE_{side}"):
            ins[side] = env[f"KINETIC_INSOLE_{side}"].upper()
    over["insoles"] = ins
    return replace(settings, **over)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def save_settings(settings: CollectorSettings, path: Path | None = None) -> Path:
    """Write the settings as TOML (atomically: a half-written config never replaces a good one)."""
    path = path or default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    if settings.patient:
        lines.append(f"patient = {_toml_str(settings.patient)}")
    lines += [
        f"profile = {_toml_str(settings.profile)}",
        f"outbox_path = {_toml_str(str(settings.outbox_path))}",
        f"outbox_budget_mb = {settings.outbox_budget_mb:g}",
    ]
    for side in sorted(settings.insoles):
        lines += ["", f"[insoles.{side}]", f"address = {_toml_str(settings.insoles[side])}"]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
