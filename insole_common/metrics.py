"""The metric catalogue: every gait metric's key, unit, label, the direction in which heel pain moves it,
whether it is kept per side, and its display precision. Service, detector, dashboards, exports and docs read
it from here; a new metric is added in one place (:data:`CATALOGUE`).

The column names of the analytics tables are constants here too (kept stable: the CLI and an external
harness read them); ``from insole_common import metrics as C`` is the usual import.
"""

from __future__ import annotations

from dataclasses import dataclass

SIDE = "side"
HEEL_STRIKE_S = "heel_strike_s"
TOE_OFF_S = "toe_off_s"
NEXT_HEEL_STRIKE_S = "next_heel_strike_s"
STRIDE_TIME_S = "stride_time_s"
STANCE_TIME_S = "stance_time_s"
SWING_TIME_S = "swing_time_s"
STANCE_PCT = "stance_pct"
DOUBLE_SUPPORT_S = "double_support_s"
DOUBLE_SUPPORT_PCT = "double_support_pct"
CADENCE_STEPS_PER_MIN = "cadence_steps_per_min"
STRIDE_LENGTH_M = "stride_length_m"
STRIDE_LENGTH_SOURCE = "stride_length_source"
GAIT_SPEED_M_S = "gait_speed_m_s"
COP_ML_MEAN_FW = "cop_ml_mean_fw"
COP_AP_START_FL = "cop_ap_start_fl"
COP_AP_END_FL = "cop_ap_end_fl"
COP_ML_START_FW = "cop_ml_start_fw"
COP_ML_END_FW = "cop_ml_end_fw"
GAIT_LINE_LENGTH_FL = "gait_line_length_fl"
GAIT_LINE_WIDTH_FW = "gait_line_width_fw"
LATERAL_LOAD_FRACTION = "lateral_load_fraction"
MEDIAL_LOAD_FRACTION = "medial_load_fraction"
HEEL_LOAD_FRACTION = "heel_load_fraction"
MIDFOOT_LOAD_FRACTION = "midfoot_load_fraction"
FOREFOOT_LOAD_FRACTION = "forefoot_load_fraction"
LATERAL_FOREFOOT_LOAD_FRACTION = "lateral_forefoot_load_fraction"
REARFOOT_CONTACT_S = "rearfoot_contact_s"
REARFOOT_CONTACT_PCT = "rearfoot_contact_pct"
#: the stance's force-time integral (load unit x s; the load unit is the stride's ``load_unit``)
STANCE_IMPULSE = "stance_impulse"
PEAK_HEEL_LOAD = "peak_heel_load"
PEAK_LOAD = "peak_load"
LOAD_UNIT = "load_unit"
BOUT_ID = "bout_id"

#: a stride's times: events and durations (also the fields of a provisional stride, online.py)
STRIDE_TIME_COLS = [HEEL_STRIKE_S, TOE_OFF_S, NEXT_HEEL_STRIKE_S, STRIDE_TIME_S, STANCE_TIME_S, SWING_TIME_S]
#: columns every strides table has, in this order
STRIDE_CORE_COLS = [SIDE, *STRIDE_TIME_COLS, STANCE_PCT, CADENCE_STEPS_PER_MIN]
#: columns filled when the data allows it (NaN otherwise)
STRIDE_OPTIONAL_COLS = [DOUBLE_SUPPORT_S, DOUBLE_SUPPORT_PCT, STRIDE_LENGTH_M, GAIT_SPEED_M_S,
                        COP_AP_START_FL, COP_ML_START_FW, COP_AP_END_FL, COP_ML_END_FW, GAIT_LINE_LENGTH_FL,
                        GAIT_LINE_WIDTH_FW, COP_ML_MEAN_FW, LATERAL_LOAD_FRACTION, MEDIAL_LOAD_FRACTION,
                        HEEL_LOAD_FRACTION, MIDFOOT_LOAD_FRACTION, FOREFOOT_LOAD_FRACTION, PEAK_HEEL_LOAD, PEAK_LOAD,
                        LATERAL_FOREFOOT_LOAD_FRACTION, REARFOOT_CONTACT_S, REARFOOT_CONTACT_PCT, STANCE_IMPULSE]
STRIDE_COLS = STRIDE_CORE_COLS + STRIDE_OPTIONAL_COLS + [STRIDE_LENGTH_SOURCE, LOAD_UNIT, BOUT_ID]

BOUT_COLS = ["start_s", "end_s", "activity", "n_strides"]
ACTIVITIES = ("walking", "standing", "sitting", "shuffling", "turning", "no_data")


#: signed symmetry indices of a day (per cent, positive = more on the left), each from the per-side daily medians
#: of one per-stride metric (:data:`SYMMETRY_OF`) by the one formula, ``processing.analytics.symmetry_index``
STANCE_SYMMETRY_PCT = "stance_symmetry_pct"
LOAD_SYMMETRY_PCT = "load_symmetry_pct"
HEEL_LOAD_SYMMETRY_PCT = "heel_load_symmetry_pct"
#: the per-stride metric whose left and right daily values each symmetry index compares
SYMMETRY_OF: dict[str, str] = {STANCE_SYMMETRY_PCT: STANCE_TIME_S, LOAD_SYMMETRY_PCT: STANCE_IMPULSE,
                               HEEL_LOAD_SYMMETRY_PCT: HEEL_LOAD_FRACTION}

UP, DOWN, EITHER, NONE = +1, -1, 0, None


@dataclass(frozen=True)
class Metric:
    """One gait metric as everybody shows and watches it."""

    key: str
    #: unit for people ("s", "m", "steps/min", "%", "foot widths", "fraction of load", ...)
    unit: str
    #: label for people
    label: str
    #: the direction in which a heel-pain compensation moves it: ``UP`` (+1), ``DOWN`` (-1), ``EITHER`` (0:
    #: away from the patient's own level, e.g. asymmetry toward either side) or ``NONE`` (no direction claimed)
    compensation: int | None
    #: why (a reference, or the reason no direction is claimed)
    evidence: str
    #: kept per side as ``{key}_L`` / ``{key}_R`` in the daily summaries
    per_side: bool = True
    #: decimals when shown
    decimals: int = 2
    #: summarised per day and week (the median of the day's strides; the week: the median of its days)
    daily: bool = True
    #: how to say it to a patient; None: not shown to patients
    plain: str | None = None
    #: a share of a foot's load that can be small (a region's share on a layout with few sensors there): a change
    #: is measured relative to the foot's own baseline share (e.g. -30 % of it), not as an absolute difference,
    #: so that thresholds scale with the patient (each foot's share is kept per side: ``{key}_L`` / ``{key}_R``)
    relative: bool = False


_PHILLIPS = "Phillips & McClinton 2017 (review: plantar heel pain walks slower, with shorter strides)"
_CERVERA = "Cervera-Garvi et al. 2023 (plantar fasciitis: lower speed and cadence, longer gait cycle)"
_SULLIVAN = "Sullivan et al. 2015 (plantar heel pain: more lateral forefoot load, load moved off the heel)"
_REARFOOT = ("Phillips & McClinton 2017 (review: plantar heel pain shortens rearfoot contact and the rearfoot COP "
             "duration, and lowers the heel impulse)")

CATALOGUE: tuple[Metric, ...] = (
    Metric(STRIDE_TIME_S, "s", "Stride time", UP, _CERVERA, decimals=3),
    Metric(STANCE_TIME_S, "s", "Stance time", NONE, "per side only through the stance symmetry", decimals=3),
    Metric(SWING_TIME_S, "s", "Swing time", NONE, "no consistent direction reported", decimals=3),
    Metric(STANCE_PCT, "% of stride", "Stance", NONE, "no consistent direction reported", decimals=1),
    Metric(DOUBLE_SUPPORT_PCT, "% of stride", "Double support", NONE, "no consistent direction reported",
           decimals=1),
    Metric(CADENCE_STEPS_PER_MIN, "steps/min", "Cadence", DOWN, _CERVERA, decimals=1,
           plain="your walking pace"),
    Metric(STRIDE_LENGTH_M, "m", "Stride length", DOWN, _PHILLIPS, decimals=2,
           plain="the length of your steps"),
    Metric(GAIT_SPEED_M_S, "m/s", "Walking speed", DOWN, _PHILLIPS, decimals=2),
    Metric(COP_ML_MEAN_FW, "foot widths", "Medial-lateral COP", UP,
           _SULLIVAN + "; positive = lateral on both feet", decimals=3),
    Metric(LATERAL_LOAD_FRACTION, "fraction of load", "Lateral load", UP, _SULLIVAN, decimals=3,
           plain="how much weight goes to the outside of your feet"),
    Metric(HEEL_LOAD_FRACTION, "fraction of stance impulse", "Heel (rearfoot) impulse", DOWN,
           _REARFOOT + "; " + _SULLIVAN, decimals=3, plain="how much weight you put on your heels", relative=True),
    Metric(MIDFOOT_LOAD_FRACTION, "fraction of stance impulse", "Midfoot impulse", NONE,
           "no consistent direction reported", decimals=3, relative=True),
    Metric(FOREFOOT_LOAD_FRACTION, "fraction of stance impulse", "Forefoot impulse", UP, _SULLIVAN, decimals=3),
    Metric(LATERAL_FOREFOOT_LOAD_FRACTION, "fraction of stance impulse", "Lateral-forefoot impulse", UP,
           _SULLIVAN, decimals=3, relative=True),
    Metric(REARFOOT_CONTACT_S, "s", "Rearfoot contact", DOWN, _REARFOOT, decimals=3),
    Metric(REARFOOT_CONTACT_PCT, "% of stance", "Rearfoot contact", DOWN, _REARFOOT, decimals=1),
    Metric(STANCE_IMPULSE, "load unit × s", "Stance impulse", NONE,
           "per side only through the load symmetry (depends on body weight, insole and stance time)", decimals=1),
    Metric(PEAK_HEEL_LOAD, "sum of sensor pressures", "Peak heel load", DOWN, _SULLIVAN, decimals=1),
    Metric(PEAK_LOAD, "sum of sensor pressures", "Peak load", NONE, "depends on body weight and footwear",
           decimals=1),
    Metric(STANCE_SYMMETRY_PCT, "%", "Stance symmetry (L−R)", EITHER,
           "limp: asymmetry toward the painful side (Phillips & McClinton 2017)", per_side=False, decimals=1,
           daily=False, plain="how evenly you share your weight between your feet"),
    Metric(LOAD_SYMMETRY_PCT, "%", "Load symmetry (L−R)", EITHER,
           "off-loading the painful foot: less stance impulse on that side (Phillips & McClinton 2017)",
           per_side=False, decimals=1, daily=False),
    Metric(HEEL_LOAD_SYMMETRY_PCT, "%", "Heel impulse symmetry (L−R)", EITHER,
           "heel impulse lower on the painful side: " + _REARFOOT, per_side=False, decimals=1, daily=False),
)
BY_KEY: dict[str, Metric] = {m.key: m for m in CATALOGUE}
#: per-stride columns summarised per day and per week, in catalogue order
DAILY_METRICS: tuple[str, ...] = tuple(m.key for m in CATALOGUE if m.daily)
#: the weekly trend charts of the therapist's patient page, in order
TREND_METRICS: tuple[Metric, ...] = tuple(BY_KEY[k] for k in (
    CADENCE_STEPS_PER_MIN, STRIDE_LENGTH_M, STRIDE_TIME_S, STANCE_SYMMETRY_PCT, LATERAL_LOAD_FRACTION, COP_ML_MEAN_FW,
    HEEL_LOAD_FRACTION))


def metric(key: str) -> Metric:
    """The catalogue entry of ``key``, also for a per-side key (``{key}_L`` / ``{key}_R``)."""
    if key in BY_KEY:
        return BY_KEY[key]
    base, _, side = key.rpartition("_")
    if side in ("L", "R") and base in BY_KEY:
        return BY_KEY[base]
    raise KeyError(f"{key!r} is not in the metric catalogue")
