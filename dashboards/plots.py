"""Numbers behind the pictures: insole outline, pressure heat maps and centre-of-pressure gait lines.

All positions are in the foot frame of :mod:`insole_common.layouts` (``ap`` 0 heel .. 1 toe,
``ml`` in foot widths, lateral +, the same for both feet). The browser mirrors the left
foot when it draws (``static/charts.js``), so the heat maps here are side-agnostic.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from insole_common import metrics as C
from insole_common.codec import Batch
from insole_common.layouts import SensorLayout, centre_of_pressure
from processing.service import recording_from_batches

#: a right insole's outline, (ap, ml), clockwise from the back of the heel; smoothed by :func:`foot_outline`
_OUTLINE_KNOTS = (
    (0.0, 0.0), (0.02, 0.18), (0.08, 0.30), (0.2, 0.34), (0.35, 0.37), (0.5, 0.41), (0.65, 0.47), (0.75, 0.48),
    (0.84, 0.43), (0.90, 0.32), (0.95, 0.14), (0.985, -0.06), (1.0, -0.2), (0.975, -0.36), (0.9, -0.45),
    (0.74, -0.48), (0.6, -0.40), (0.46, -0.28), (0.32, -0.27), (0.2, -0.33), (0.08, -0.31), (0.02, -0.18),
)
GRID_AP_N = 40
GRID_ML_N = 16
GAIT_LINE_POINTS_N = 41
#: aspect of the insole: length in foot widths (for isotropic interpolation distances)
LENGTH_IN_WIDTHS = 2.6


@lru_cache(maxsize=1)
def foot_outline() -> list[list[float]]:
    """A smooth closed outline (Chaikin corner cutting of :data:`_OUTLINE_KNOTS`)."""
    pts = np.array(_OUTLINE_KNOTS, dtype=float)
    for _ in range(3):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], axis=1).reshape(-1, 2)
    return [[round(float(a), 4), round(float(m), 4)] for a, m in pts]


def grid_axes() -> tuple[np.ndarray, np.ndarray]:
    ap = (np.arange(GRID_AP_N) + 0.5) / GRID_AP_N
    ml = (np.arange(GRID_ML_N) + 0.5) / GRID_ML_N - 0.5
    return ap, ml


@lru_cache(maxsize=8)
def _idw_weights(layout: SensorLayout) -> np.ndarray:
    """(grid cells, channels) inverse-distance weights, rows summing to 1."""
    ap, ml = grid_axes()
    gap, gml = np.meshgrid(ap, ml, indexing="ij")
    d2 = ((gap.reshape(-1, 1) - layout.ap_array) * LENGTH_IN_WIDTHS) ** 2 + (gml.reshape(-1, 1) - layout.ml_array) ** 2
    w = 1.0 / (d2 + 0.004) ** 1.5
    return w / w.sum(axis=1, keepdims=True)


def heat_grid(layout: SensorLayout, values: np.ndarray) -> list[list[float]]:
    """Sensor values spread over the insole grid (``GRID_AP_N`` rows heel->toe of ``GRID_ML_N`` cells medial->lateral)."""
    v = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)
    grid = (_idw_weights(layout) @ v).reshape(GRID_AP_N, GRID_ML_N)
    return np.round(grid, 2).tolist()


def foot_frame(layout: SensorLayout, pressure_kpa: np.ndarray) -> dict:
    """One foot's picture: sensors, per-sensor values and the heat grid."""
    return {
        "layout": layout.name,
        "sensors": [[round(a, 3), round(m, 3)] for a, m in zip(layout.ap, layout.ml, strict=True)],
        "values": [round(float(x), 1) if np.isfinite(x) else None for x in pressure_kpa],
        "grid": heat_grid(layout, pressure_kpa),
    }


def _resample(ap: np.ndarray, ml: np.ndarray, n: int) -> np.ndarray | None:
    ok = np.isfinite(ap) & np.isfinite(ml)
    if ok.sum() < 5:
        return None
    x = np.linspace(0.0, 1.0, len(ap))[ok]
    u = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(u, x, ap[ok]), np.interp(u, x, ml[ok])], axis=1)


def session_pressure(batches: list[Batch], strides: pd.DataFrame, origin_us: int, *, lines_n: int = 8) -> dict:
    """Pressure map (mean pressure while loaded) and COP gait lines of one session, per side.

    Gait lines: the COP during each stride's stance (heel strike to toe off), resampled to
    :data:`GAIT_LINE_POINTS_N` points; ``typical`` is the point-wise median over strides and
    ``examples`` are ``lines_n`` strides spread over the session.
    """
    recording = recording_from_batches(batches, origin_us=origin_us)
    out: dict = {"outline": foot_outline(), "grid": {"ap_n": GRID_AP_N, "ml_n": GRID_ML_N}, "feet": {}}
    if recording is None:
        return out
    for side, foot in recording.feet.items():
        layout = foot.layout
        if layout is None:
            continue
        p = foot.pressure
        total = np.nansum(np.clip(p, 0, None), axis=1)
        loaded = np.isfinite(p).all(axis=1) & (total > 0.1 * np.nanmax(total)) if len(total) else np.zeros(0, bool)
        mean = np.nanmean(p[loaded], axis=0) if loaded.any() else np.full(layout.n_channels, np.nan)
        peak = np.nanpercentile(p[loaded], 95, axis=0) if loaded.any() else np.full(layout.n_channels, np.nan)
        frame = foot_frame(layout, mean)
        frame["peak_values"] = [round(float(x), 1) if np.isfinite(x) else None for x in peak]
        frame["unit"] = foot.pressure_unit
        ap, ml = centre_of_pressure(layout, np.where(np.isfinite(p), p, 0.0))
        lines = []
        mine = strides[strides[C.SIDE] == side] if len(strides) else strides
        for hs, to in zip(pd.to_numeric(mine.get(C.HEEL_STRIKE_S, []), errors="coerce"),
                          pd.to_numeric(mine.get(C.TOE_OFF_S, []), errors="coerce"), strict=False):
            if not (np.isfinite(hs) and np.isfinite(to)) or to <= hs:
                continue
            # only the samples inside the stance: the events fall between samples, and the sample before heel
            # strike (or after toe off) carries the noise of an unloaded foot, whose centroid is a stray point
            i0 = int(np.ceil((hs - foot.t0_s) * foot.sample_rate_hz))
            i1 = int(np.floor((to - foot.t0_s) * foot.sample_rate_hz)) + 1
            if i0 < 0 or i1 > len(ap) or i1 - i0 < 5:
                continue
            line = _resample(ap[i0:i1], ml[i0:i1], GAIT_LINE_POINTS_N)
            if line is not None:
                lines.append(line)
        if lines:
            stack = np.stack(lines)
            typical = np.median(stack, axis=0)
            pick = np.unique(np.linspace(0, len(lines) - 1, min(lines_n, len(lines))).round().astype(int))
            frame["gait_line"] = {
                "typical": np.round(typical, 4).tolist(),
                "examples": [np.round(stack[i], 4).tolist() for i in pick],
                "strides_n": len(lines),
            }
        else:
            frame["gait_line"] = {"typical": [], "examples": [], "strides_n": 0}
        out["feet"][side] = frame
    return out
