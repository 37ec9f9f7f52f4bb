"""Sensor layouts: where each pressure channel sits under the foot.

The foot-normalised frame (same for both feet)
----------------------------------------------
``ap``  anterior-posterior position as a fraction of insole length:
        0.0 = back of the heel, 1.0 = tip of the longest toe.
``ml``  medial-lateral position as a fraction of insole width, measured from the
        foot's long axis: +0.5 = lateral (little-toe) edge, -0.5 = medial (arch)
        edge.

The left foot is mirrored into this frame, so "lateral" is positive on both
feet and a left and a right insole of one model share one layout table. A centre
of pressure (COP) computed with :func:`centre_of_pressure` is therefore in
"foot lengths" (``ap``) and "foot widths" (``ml``), lateral positive.

Layouts
-------
``kc16``     16 channels, the Kinetic Chain open insole profile: four heel,
             three midfoot, five metatarsal-head and four toe sensors, a
             density like Moticon OpenGo insoles. Positions are our own
             anatomical placement (docs/sensor-layouts.md); they are *not*
             Moticon's proprietary sensor map, which is not published.
``gaitpdb8`` 8 channels per foot of the Infotronic Ultraflex insoles in
             PhysioNet gaitpdb, converted from the coordinates in its
             ``format.txt`` (see :data:`GAITPDB_RAW_XY`).
``orphe6``   6 channels of the ORPHE INSOLE in its SDKs' order (toe medial, ball
             medial, toe lateral, ball centre, midfoot lateral, heel); positions
             are anatomical estimates of those points (docs/ble-profile.md).

Foot regions: one rule for every layout
--------------------------------------
A sensor's region follows from its position alone (:func:`region_of_ap`): rearfoot
(``heel``) for ``ap < 0.27``, ``midfoot`` for ``0.27 <= ap < 0.55``, ``forefoot`` (toes
included) for ``ap >= 0.55`` — the percentage-of-foot-length mask of Cavanagh & Ulbrecht
(1994), the three-part mask of Novel-style automasking (e.g. ``automask_simple`` of the
pressuRe package). Medial / lateral is the side of the foot's long axis (``ml < 0`` /
``ml > 0``); the lateral forefoot is forefoot and lateral. The same cut-points classify a
centre of pressure (:data:`REARFOOT_END_FL`). docs/sensor-layouts.md lists every shipped
sensor's region and the rule's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from insole_common.errors import ValidationError

Region = Literal["heel", "midfoot", "forefoot"]
#: the regions from back to front; ``heel`` is the rearfoot
REGIONS: tuple[Region, ...] = ("heel", "midfoot", "forefoot")
#: cut-points in foot lengths from the back of the heel (Cavanagh & Ulbrecht 1994 percentage mask):
#: rearfoot [0, 0.27), midfoot [0.27, 0.55), forefoot [0.55, 1]
REARFOOT_END_FL = 0.27
MIDFOOT_END_FL = 0.55


def region_of_ap(ap: np.ndarray) -> np.ndarray:
    """Region index (0 rearfoot / heel, 1 midfoot, 2 forefoot; into :data:`REGIONS`) of positions ``ap`` in foot
    lengths; -1 where ``ap`` is NaN."""
    ap = np.asarray(ap, dtype=np.float64)
    idx = np.searchsorted(np.array([REARFOOT_END_FL, MIDFOOT_END_FL]), ap, side="right")
    return np.where(np.isnan(ap), -1, idx)


@dataclass(frozen=True)
class SensorLayout:
    """Positions of one insole model's pressure channels in the foot frame."""

    name: str
    #: one-byte id carried in every wire-format batch (0 is "custom/unknown")
    wire_id: int
    description: str
    channels: tuple[str, ...]
    ap: tuple[float, ...]
    ml: tuple[float, ...]
    #: what the positions are based on
    source: str

    def __post_init__(self) -> None:
        n = len(self.channels)
        if not (len(self.ap) == len(self.ml) == n):
            raise ValidationError(f"layout {self.name!r}: channels, ap and ml differ in length")
        if not all(0.0 <= a <= 1.0 for a in self.ap) or not all(-0.5 <= m <= 0.5 for m in self.ml):
            raise ValidationError(f"layout {self.name!r}: a position lies outside the foot frame")

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def ap_array(self) -> np.ndarray:
        return np.asarray(self.ap, dtype=np.float64)

    @property
    def ml_array(self) -> np.ndarray:
        return np.asarray(self.ml, dtype=np.float64)

    @property
    def regions(self) -> tuple[Region, ...]:
        """Each channel's region by the one rule (:func:`region_of_ap`)."""
        return tuple(REGIONS[i] for i in region_of_ap(self.ap_array))

    def region_mask(self, region: Region) -> np.ndarray:
        """Boolean mask of the channels in ``region`` (by :func:`region_of_ap`)."""
        if region not in REGIONS:
            raise ValidationError(f"unknown region {region!r}; expected one of {REGIONS}")
        return region_of_ap(self.ap_array) == REGIONS.index(region)

    @property
    def lateral_forefoot_mask(self) -> np.ndarray:
        """Forefoot channels lateral of the foot axis."""
        return self.region_mask("forefoot") & self.lateral_mask

    @property
    def lateral_mask(self) -> np.ndarray:
        """Channels lateral of the foot axis (``ml > 0``)."""
        return self.ml_array > 0

    @property
    def medial_mask(self) -> np.ndarray:
        """Channels medial of the foot axis (``ml < 0``)."""
        return self.ml_array < 0


def centre_of_pressure(
    layout: SensorLayout, load: np.ndarray, *, min_total: float = 1e-9
) -> tuple[np.ndarray, np.ndarray]:
    """Centre of pressure per sample, in the foot frame.

    ``load`` is ``(n_samples, n_channels)`` of force or of pressure (pressure
    is weighted as if every sensor had the same area). Returns ``(ap, ml)``
    arrays of length ``n_samples``; NaN where the total load is at or below
    ``min_total`` (foot in the air).
    """
    load = np.asarray(load, dtype=np.float64)
    if load.ndim != 2 or load.shape[1] != layout.n_channels:
        raise ValidationError(
            f"layout {layout.name!r} has {layout.n_channels} channels; got an array of shape {load.shape}"
        )
    clipped = np.clip(load, 0.0, None)
    total = clipped.sum(axis=1)
    loaded = total > min_total
    safe_total = np.where(loaded, total, 1.0)
    ap = np.where(loaded, clipped @ layout.ap_array / safe_total, np.nan)
    ml = np.where(loaded, clipped @ layout.ml_array / safe_total, np.nan)
    return ap, ml


#: gaitpdb's own coordinates (format.txt), right foot, arbitrary units; the
#: left foot has X negated. Converted to the foot frame by
#: ap = 0.1 + 0.8 * (Y + 800) / 1600 and ml = (|X| - 500) / 400 * 0.5.
GAITPDB_RAW_XY: tuple[tuple[int, int], ...] = (
    (500, -800), (700, -400), (300, -400), (700, 0),
    (300, 0), (700, 400), (300, 400), (500, 800),
)


def _gaitpdb_layout() -> SensorLayout:
    ap = tuple(round(0.1 + 0.8 * (y + 800) / 1600, 4) for _, y in GAITPDB_RAW_XY)
    ml = tuple(round((abs(x) - 500) / 400 * 0.5, 4) for x, _ in GAITPDB_RAW_XY)
    return SensorLayout(
        name="gaitpdb8",
        wire_id=2,
        description="Infotronic Ultraflex, 8 force sensors per foot (PhysioNet gaitpdb)",
        channels=tuple(f"s{i}" for i in range(1, 9)),
        ap=ap,
        ml=ml,
        source="PhysioNet gaitpdb format.txt sensor coordinates",
    )


KC16 = SensorLayout(
    name="kc16",
    wire_id=1,
    description="Kinetic Chain open insole profile, 16 pressure sensors",
    channels=tuple(f"p{i:02d}" for i in range(1, 17)),
    #        heel: medial/lateral posterior, medial/lateral anterior
    ap=(0.07, 0.07, 0.17, 0.17,
        # midfoot: lateral posterior, lateral anterior, medial arch
        0.36, 0.50, 0.42,
        # metatarsal heads 1..5
        0.71, 0.73, 0.72, 0.69, 0.65,
        # toes: hallux, 2nd, 3rd-4th, 5th
        0.91, 0.89, 0.86, 0.81),
    ml=(-0.10, 0.10, -0.12, 0.14,
        0.22, 0.27, -0.16,
        -0.26, -0.10, 0.04, 0.17, 0.30,
        -0.22, -0.04, 0.10, 0.24),
    source="anatomical placement (docs/sensor-layouts.md); "
           "density modelled on 16-sensor insoles such as Moticon OpenGo",
)

GAITPDB8 = _gaitpdb_layout()

ORPHE6 = SensorLayout(
    name="orphe6",
    wire_id=3,
    description="ORPHE INSOLE, 6 pressure sensors",
    # channel order as in ORPHE's open SDKs (ORPHE-INSOLE.js parseInsoleSensorValues, ORPHE-INSOLE.py):
    # 1 toe medial, 2 ball medial, 3 toe lateral, 4 ball centre, 5 midfoot lateral, 6 heel
    channels=("toe_medial", "ball_medial", "toe_lateral", "ball_centre", "midfoot_lateral", "heel"),
    ap=(0.90, 0.72, 0.85, 0.72, 0.45, 0.10),
    ml=(-0.20, -0.25, 0.15, 0.0, 0.27, 0.0),
    source="sensor order from ORPHE's open SDKs; positions are anatomical estimates of the named points",
)

LAYOUTS: dict[str, SensorLayout] = {layout.name: layout for layout in (KC16, GAITPDB8, ORPHE6)}
LAYOUTS_BY_WIRE_ID: dict[int, SensorLayout] = {layout.wire_id: layout for layout in LAYOUTS.values()}


def get_layout(name_or_wire_id: str | int) -> SensorLayout:
    """Look a layout up by name (``"kc16"``) or by its wire id (``1``)."""
    table = LAYOUTS_BY_WIRE_ID if isinstance(name_or_wire_id, int) else LAYOUTS
    try:
        return table[name_or_wire_id]  # type: ignore[index]
    except KeyError:
        raise ValidationError(
            f"unknown sensor layout {name_or_wire_id!r}; known: {sorted(LAYOUTS)}", reason="unknown_layout"
        ) from None
