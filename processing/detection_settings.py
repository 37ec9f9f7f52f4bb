"""The settings of compensation detection (:class:`DetectionSettings`), as a deployment sets them.

Defaults are the validated ones (docs/detection.md). A deployment overrides any of them in a TOML file
named by the environment variable ``KINETIC_DETECTION_CONFIG``::

    [detection]
    baseline_days = 14
    cusum_h = 5.0

    [detection.sd_floors]
    stride_length_m = 0.02

Unknown keys, wrong types and impossible values are a :class:`insole_common.errors.ValidationError`
(reason ``bad_detection_config``) naming the key. Every stored baseline keeps the settings that made it
(``baselines.settings_json``, :meth:`DetectionSettings.to_json`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from insole_common import metrics as C
from insole_common.errors import ValidationError

#: environment variable: path of the deployment's TOML file with a ``[detection]`` table
CONFIG_ENV = "KINETIC_DETECTION_CONFIG"

_SI = "si_"
#: per metric (symmetry indices ``si_...`` in percentage points): the typical day-to-day SD of one day's
#: median in free-living walking (the shrinkage target) and the floor the SD used is never below
#: (measurement resolution / smallest meaningful change)
_SD_PRIOR_FLOOR: dict[str, tuple[float, float]] = {
    C.STRIDE_LENGTH_M: (0.04, 0.015),
    C.CADENCE_STEPS_PER_MIN: (2.5, 1.0),
    C.STRIDE_TIME_S: (0.025, 0.01),
    C.COP_ML_MEAN_FW: (0.012, 0.005),
    C.LATERAL_LOAD_FRACTION: (0.02, 0.008),
    _SI + C.STANCE_TIME_S: (1.5, 0.75),
    _SI + C.PEAK_LOAD: (2.5, 1.0),
    _SI + C.PEAK_HEEL_LOAD: (3.0, 1.5),
}
#: typical day-to-day SD of one day's median in free-living walking (the shrinkage target)
SD_PRIORS: dict[str, float] = {k: prior for k, (prior, _) in _SD_PRIOR_FLOOR.items()}
#: the day-to-day SD used is never below this
SD_FLOORS: dict[str, float] = {k: floor for k, (_, floor) in _SD_PRIOR_FLOOR.items()}
#: metrics that are a share of a small load (the heel's share is 3..25 % depending on the insole's heel sensors):
#: their prior and floor are *relative* to the patient's own baseline level (prior = 0.10 x mean, floor = 0.04 x
#: mean), so the same relative off-load gives the same z whatever the heel sensors' share (docs/detection.md)
_SD_PRIOR_FLOOR_RELATIVE: dict[str, tuple[float, float]] = {
    C.HEEL_LOAD_FRACTION: (0.10, 0.04),
    C.LATERAL_FOREFOOT_LOAD_FRACTION: (0.05, 0.02),
}
SD_PRIORS_RELATIVE: dict[str, float] = {k: prior for k, (prior, _) in _SD_PRIOR_FLOOR_RELATIVE.items()}
SD_FLOORS_RELATIVE: dict[str, float] = {k: floor for k, (_, floor) in _SD_PRIOR_FLOOR_RELATIVE.items()}
_SD_TABLES = {"sd_priors": SD_PRIORS, "sd_floors": SD_FLOORS, "sd_priors_relative": SD_PRIORS_RELATIVE,
              "sd_floors_relative": SD_FLOORS_RELATIVE}
#: the compensation kinds (processing.detection_records.KINDS; repeated here because the records import the settings)
_KINDS = ("lateral_shift", "shortened_stride", "slowing", "limp", "heel_offloading")
#: per-kind CUSUM settings that replace ``cusum_k`` / ``cusum_h`` / ``min_days_beyond`` for that kind's series:
#: empty by default (every kind uses the general ones); keys are kinds
_KIND_TABLES = ("cusum_k_by_kind", "cusum_h_by_kind", "min_days_beyond_by_kind", "mean_rule_z_by_kind")
#: every table of numbers keyed by name: what a key may be
_TABLE_KEYS: dict[str, tuple[str, ...]] = {**{k: tuple(v) for k, v in _SD_TABLES.items()},
                                           **dict.fromkeys(_KIND_TABLES, _KINDS)}


#: the defaults of the per-kind tables (docs/detection.md, "Small shifts")
KIND_DEFAULTS: dict[str, dict[str, float]] = {"cusum_k_by_kind": {}, "cusum_h_by_kind": {},
                                              "min_days_beyond_by_kind": {}, "mean_rule_z_by_kind": {}}
#: the windowed-mean rule's threshold per kind (docs/detection.md, "Small shifts"; issue 19 round 3): the walking-speed
#: series and lateral shift, the two ~1-1.5-SD changes of docs/validation.md. The values are the bound of one series
#: at a 0.5 % share of false-flag weeks (scripts/detection_power_bound.py, m = 10, SD estimated from 10 days).
#: A deployment's table replaces this one (a kind left out has no mean rule).
MEAN_RULE_DEFAULTS: dict[str, float] = {"shortened_stride": 3.3, "slowing": 3.3, "lateral_shift": 3.2}


def _bad(message: str) -> ValidationError:
    return ValidationError(f"detection settings: {message}", reason="bad_detection_config")


@dataclass(frozen=True)
class DetectionSettings:
    """Every setting of :class:`processing.detection.CompensationDetector` (docs/detection.md says what each does).

    ``sd_priors`` / ``sd_floors`` (and the ``_relative`` tables) given in part are completed with the defaults
    (:data:`SD_PRIORS`, :data:`SD_FLOORS`, :data:`SD_PRIORS_RELATIVE`, :data:`SD_FLOORS_RELATIVE`); their keys
    are the metrics of those tables.
    """

    baseline_days: int = 10
    min_baseline_days: int = 3
    min_strides_n: int = 20
    z_real_change: float = 1.96
    cusum_k: float = 1.0
    cusum_h: float = 4.0
    z_clip: float = 3.5
    min_days_beyond: int = 2
    prior_weight_days: float = 4.0
    return_days: int = 3
    clear_days: int = 5
    sd_priors: Mapping[str, float] = field(default_factory=dict)
    sd_floors: Mapping[str, float] = field(default_factory=dict)
    sd_priors_relative: Mapping[str, float] = field(default_factory=dict)
    sd_floors_relative: Mapping[str, float] = field(default_factory=dict)
    #: compare every watched metric except the walking-speed ones with the baseline at the day's cadence
    #: (a per-patient baseline regression on cadence; the residual is tested)
    speed_adjust: bool = True
    #: ridge weight of that regression's slope toward 0 (no adjustment), in (steps/min)^2: a baseline whose
    #: cadence varies by 2 steps/min over 10 days (sum of squares 36) gets half its own slope
    slope_prior_spm2: float = 36.0
    #: |day cadence - baseline cadence| beyond this (steps/min) is adjusted as if it were this far
    slope_max_spm: float = 15.0
    #: with a stride length measured by the IMU, watch the cadence as well (kind ``slowing``): two measurements of
    #: walking speed (without one the stride series is the cadence itself). Issue 19, round 2: 8 %-slower simulated
    #: patients flagged 10/20 -> 15/20, no more false flags (docs/validation.md)
    slowing_with_imu: bool = True
    #: watch lateral shift on the lateral forefoot's share of each foot's impulse first (COP next), not on the COP.
    #: Issue 19, round 2: one-foot 10 % medial->lateral transfer flagged 11/14 -> 12/14 real walks, 7/20 -> 15/20
    #: simulated patients, no more false flags (docs/validation.md)
    lateral_forefoot_first: bool = True
    #: per kind, the CUSUM reference / decision limit / days beyond the real-change threshold that replace
    #: ``cusum_k`` / ``cusum_h`` / ``min_days_beyond`` for that kind's series (a change that is small in the
    #: patient's own SD units is found sooner with a smaller k: docs/detection.md)
    cusum_k_by_kind: Mapping[str, float] = field(default_factory=dict)
    cusum_h_by_kind: Mapping[str, float] = field(default_factory=dict)
    min_days_beyond_by_kind: Mapping[str, float] = field(default_factory=dict)
    #: the windowed-mean rule next to the CUSUM: a kind in this table is also raised when the mean of its last
    #: ``mean_rule_days`` valid days (since the series last improved) is beyond this many
    #: sd sqrt(1/m + 1/n) from the baseline mean, in the direction heel pain moves it. Issue 19, round 3: lateral
    #: shift found 12/14 -> 13/14 real walks, 15/20 -> 16/20 simulated, no more false flags (docs/validation.md)
    mean_rule_z_by_kind: Mapping[str, float] = field(default_factory=lambda: dict(MEAN_RULE_DEFAULTS))
    mean_rule_days: int = 10

    def __post_init__(self) -> None:
        for name, defaults in _SD_TABLES.items():
            given = dict(getattr(self, name) or {})
            unknown = sorted(set(given) - set(defaults))
            if unknown:
                raise _bad(f"{name} has unknown metrics {unknown}; known: {sorted(defaults)}")
            object.__setattr__(self, name, {**defaults, **{k: float(v) for k, v in given.items()}})
        for name in _KIND_TABLES:
            given = {**KIND_DEFAULTS[name], **dict(getattr(self, name) or {})}
            unknown = sorted(set(given) - set(_KINDS))
            if unknown:
                raise _bad(f"{name} has unknown kinds {unknown}; known: {list(_KINDS)}")
            object.__setattr__(self, name, {k: float(v) for k, v in given.items()})
        self.check()

    def cusum_for(self, kind: str) -> tuple[float, float, int]:
        """The CUSUM reference k, decision limit h and days beyond the threshold of ``kind``'s series."""
        return (self.cusum_k_by_kind.get(kind, self.cusum_k), self.cusum_h_by_kind.get(kind, self.cusum_h),
                int(self.min_days_beyond_by_kind.get(kind, self.min_days_beyond)))

    def check(self) -> None:
        """Raise ValidationError (reason ``bad_parameter``) for settings the detector cannot work with."""
        checks = [
            (self.baseline_days >= 2, "baseline_days must be >= 2"),
            (2 <= self.min_baseline_days <= self.baseline_days, "min_baseline_days must be 2..baseline_days"),
            (self.min_strides_n >= 0, "min_strides_n must be >= 0"),
            (self.z_real_change > 0 and self.cusum_h > 0 and self.cusum_k >= 0, "thresholds must be positive"),
            (all(self.z_clip > self.cusum_for(k)[0] for k in _KINDS), "z_clip must exceed cusum_k"),
            (all(self.cusum_for(k)[1] > 0 and self.cusum_for(k)[0] >= 0 for k in _KINDS),
             "per-kind thresholds must be positive"),
            (self.min_days_beyond >= 1 and self.return_days >= 1 and self.clear_days >= 1
             and all(self.cusum_for(k)[2] >= 1 for k in _KINDS), "day counts must be >= 1"),
            (self.prior_weight_days >= 0, "prior_weight_days must be >= 0"),
            (all(v >= 0 and math.isfinite(v) for name in _SD_TABLES for v in getattr(self, name).values()),
             "sd_priors, sd_floors and their relative tables must be finite and >= 0"),
            (all(math.isfinite(v) for name in _KIND_TABLES for v in getattr(self, name).values()),
             "per-kind CUSUM settings must be finite"),
            (self.mean_rule_days >= 2 and all(v > 0 for v in self.mean_rule_z_by_kind.values()),
             "mean_rule_days must be >= 2 and the mean rule's thresholds positive"),
            (self.slope_prior_spm2 >= 0 and self.slope_max_spm >= 0, "slope settings must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValidationError(f"CompensationDetector: {msg}", reason="bad_parameter")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DetectionSettings:
        """Settings from a ``[detection]`` table: unknown keys and wrong types are an error naming the key."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise _bad(f"unknown keys {unknown}; known: {sorted(fields)}")
        for key, value in values.items():
            if key in _TABLE_KEYS:
                ok = isinstance(value, Mapping) and all(_is_number(v) for v in value.values())
            elif fields[key].type == "bool":
                ok = isinstance(value, bool)
            elif fields[key].type == "int":
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = _is_number(value)
            if not ok:
                raise _bad(f"{key} = {value!r} has the wrong type (expected {fields[key].type})")
        values = {k: float(v) if fields[k].type == "float" else v for k, v in values.items()}
        try:
            return cls(**values)
        except ValidationError as exc:
            raise _bad(str(exc)) from exc

    @classmethod
    def from_toml(cls, path: str | Path) -> DetectionSettings:
        """Settings from the ``[detection]`` table of a TOML file (absent table: the defaults)."""
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise _bad(f"cannot read {path}: {exc}") from exc
        other = sorted(set(document) - {"detection"})
        if other:
            raise _bad(f"{path}: unknown tables or keys {other}; only [detection] is read")
        return cls.from_mapping(document.get("detection", {}))

    @classmethod
    def from_json(cls, text: str) -> DetectionSettings:
        """The settings as stored with a baseline (:meth:`to_json`)."""
        return cls.from_mapping(json.loads(text))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DetectionSettings:
        """The deployment's settings: the file named by ``KINETIC_DETECTION_CONFIG``, else the defaults."""
        path = (os.environ if environ is None else environ).get(CONFIG_ENV)
        return cls.from_toml(path) if path else cls()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        """The settings as stored with each baseline (keys sorted)."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
