"""Column names and labels of the analytics tables (kept stable: the CLI and an external harness read them)."""

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
                        HEEL_LOAD_FRACTION, MIDFOOT_LOAD_FRACTION, FOREFOOT_LOAD_FRACTION, PEAK_HEEL_LOAD, PEAK_LOAD]
STRIDE_COLS = STRIDE_CORE_COLS + STRIDE_OPTIONAL_COLS + [STRIDE_LENGTH_SOURCE, LOAD_UNIT, BOUT_ID]

BOUT_COLS = ["start_s", "end_s", "activity", "n_strides"]
ACTIVITIES = ("walking", "standing", "sitting", "shuffling", "turning", "no_data")
