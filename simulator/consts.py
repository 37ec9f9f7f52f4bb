"""Names and physical constants shared by the simulator modules (docs/simulator.md)."""

from __future__ import annotations

from typing import Literal

Activity = Literal["walking", "standing", "sitting", "turning", "shuffling"]
ACTIVITIES: tuple[Activity, ...] = ("walking", "standing", "sitting", "turning", "shuffling")
#: activities in which the feet step; consecutive stepping bouts form one continuous gait sequence
STEPPING: frozenset[str] = frozenset({"walking", "turning", "shuffling"})
STATIC: frozenset[str] = frozenset({"standing", "sitting"})

#: columns of ``truth.events`` (one row per stride, heel strike to next heel strike of the same foot)
EVENT_COLUMNS = (
    "side", "activity", "heel_strike_s", "toe_off_s", "next_heel_strike_s", "stride_time_s",
    "stance_time_s", "swing_time_s", "stride_length_m", "ml_cop_fw", "heel_load_fraction", "terminal",
)
#: columns of ``truth.bouts``
BOUT_COLUMNS = ("start_s", "end_s", "activity")

GRAVITY_M_S2 = 9.80665
#: plantar contact area of an adult foot; each of a layout's sensors represents ``area / n_channels``,
#: so ``sum(pressure_kpa) * 1000 * area / n_channels`` is the total force in newtons
FOOT_CONTACT_AREA_M2 = 0.012
#: device clock reading of the left insole at true t = 0 (it was switched on this long before)
LEFT_CLOCK_OFFSET_S = 30.0
#: spatial kernel that spreads a region's load over its sensors (foot lengths, foot widths)
KERNEL_SIGMA_AP = 0.09
KERNEL_SIGMA_ML = 0.18
#: centres of load of the rearfoot (calcaneal tuberosity), midfoot (lateral column) and forefoot (metatarsal heads;
#: it follows the COP onto the toes at push-off), in foot lengths (simulator/pressure.py)
HEEL_LOAD_CENTRE_FL = 0.12
MIDFOOT_LOAD_CENTRE_FL = 0.42
FOREFOOT_LOAD_CENTRE_FL = 0.70
#: the midfoot's largest share of the foot's load (mid-stance): the arch carries little (docs/simulator.md)
MIDFOOT_SHARE_MAX = 0.20
