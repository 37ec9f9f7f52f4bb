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
#: spatial kernel that spreads the load around the centre of pressure (foot lengths, foot widths)
KERNEL_SIGMA_AP = 0.09
KERNEL_SIGMA_ML = 0.18
