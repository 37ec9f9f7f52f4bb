"""The event detector's settings in samples at one sampling rate (:meth:`LoadEventDetector.params`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventParams:
    block_n: int
    low_pct: float
    high_pct: float
    on_fraction: float
    off_fraction: float
    hs_slope_per_s: float
    to_slope_per_s: float
    min_stance_n: int
    min_swing_n: int
    max_gap_n: int
    search_n: int
    zero_based: bool
    min_relative_amplitude: float
    max_unloaded_fraction: float
    zero_level_fraction: float
    fs: float
    to_level_fraction: float = 0.02
    slope_half_n: int = 0
    sec_n: int = 1
    sub_n: int = 1
    flat_fraction: float = 0.01
    partial_swing_n: int = 0
    to_rebound_fraction: float = 0.01
    rebound_n: int = 1
    offset_to_level_fraction: float = 0.03
    edge_search_n: int = 1
