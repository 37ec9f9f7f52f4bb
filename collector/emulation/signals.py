"""Deterministic insole signals: the content of frame n depends only on n (tests check it bit for bit)."""

from __future__ import annotations

import numpy as np


def synthetic_pressure(seqs: np.ndarray, rate_hz: float, n_channels: int, side: str) -> np.ndarray:
    """A gait-like pressure pattern (raw counts) that depends only on the frame numbers."""
    t = seqs.astype(np.float64)[:, None] / rate_hz
    phase = np.arange(n_channels)[None, :] * (0.6 / n_channels) + (0.5 if side == "R" else 0.0)
    load = np.clip(np.sin(2 * np.pi * (t / 1.1 - phase)), 0, None)
    return (50 + 3000 * load + (seqs[:, None] * 7 + np.arange(n_channels)) % 13).astype(np.uint16)


def synthetic_imu(seqs: np.ndarray, rate_hz: float) -> np.ndarray:
    t = seqs.astype(np.float64)[:, None] / rate_hz
    axes = np.arange(6)[None, :]
    return (2000 * np.sin(2 * np.pi * t / 1.1 + axes)).astype(np.int16)
