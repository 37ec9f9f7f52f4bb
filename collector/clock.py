"""Map device clocks onto the collector's time base, and unwrap wrapping counters.

Model: ``arrival = device_time * (1 + drift) + offset + latency`` where latency
is never negative and jitters with the BLE connection interval. The *lower
envelope* of ``arrival - device_time`` is the latency-free line, so the aligner
keeps the minimum of ``arrival - device_time`` per window of device time and
fits the line that lies under every window minimum and as close to them as
possible (the linear-programming skew estimator of Moon, Skelly and Towsley,
1999): it is the edge of the points' lower convex hull above their mean device
time. A window with few notifications (the one in which an insole disconnected,
say) has a high minimum; it cannot tilt this line, as it would a least-squares
fit. Drift is only estimated once the minima span ``min_drift_span_s``; before
that the offset alone is used (100 ppm over 30 s is 3 ms). Both insoles' minima
sit on the same floor (one connection-event latency), so left and right land on
one time base to within a few milliseconds.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class ModularUnwrapper:
    """Turn a counter that wraps at ``modulus`` into a monotonically increasing integer.

    A step backwards of more than half the range is taken as a wrap; a small
    step backwards (a reordered or repeated packet) maps into the previous lap.
    ``modulus`` need not be a power of two (e.g. milliseconds since midnight wrap at 86 400 000).
    """

    def __init__(self, modulus: int) -> None:
        if modulus < 2:
            raise ValueError(f"modulus must be >= 2, got {modulus}")
        self.modulus = int(modulus)
        self._last: int | None = None

    def reset(self) -> None:
        self._last = None

    def unwrap(self, value: int) -> int:
        if not 0 <= value < self.modulus:
            raise ValueError(f"counter value {value} outside 0..{self.modulus - 1}")
        if self._last is None:
            self._last = value
            return value
        delta = (value - self._last) % self.modulus
        if delta >= self.modulus // 2:
            delta -= self.modulus  # moved backwards: a late/duplicate packet
        result = self._last + delta
        if result > self._last:
            self._last = result
        return result

    @property
    def last(self) -> int | None:
        return self._last


class CounterUnwrapper(ModularUnwrapper):
    """Turn a wrapping ``bits``-bit counter into a monotonically increasing integer."""

    def __init__(self, bits: int) -> None:
        super().__init__(1 << bits)


class ClockAligner:
    """Estimate offset and drift of one device clock from notification arrival times."""

    def __init__(self, *, window_s: float = 2.0, history_windows: int = 150, min_drift_span_s: float = 30.0,
                 max_drift_ppm: float = 500.0) -> None:
        self.window_us = int(window_s * 1e6)
        self.min_drift_span_us = min_drift_span_s * 1e6
        self.max_drift = max_drift_ppm * 1e-6
        self._minima: deque[tuple[int, int]] = deque(maxlen=history_windows)  # (device_us, arrival-device)
        self._cur_window: int | None = None
        self._cur_min: tuple[int, int] | None = None
        self._fit: tuple[float, float] | None = None  # intercept, slope on (device_us - ref)
        self._ref_us: int | None = None

    def observe(self, device_time_us: int, arrival_time_us: int) -> None:
        """Record one notification: the device time of its last frame and when it arrived."""
        if self._ref_us is None:
            self._ref_us = device_time_us
        diff = arrival_time_us - device_time_us
        window = device_time_us // self.window_us
        cur_min = self._cur_min
        if window != self._cur_window or cur_min is None:  # (cur_min is None only before the first window)
            if cur_min is not None:
                self._minima.append(cur_min)
                self._refit(self._ref_us)
            self._cur_window = window
            self._cur_min = (device_time_us, diff)
        elif diff < cur_min[1]:
            self._cur_min = (device_time_us, diff)

    def _points(self) -> list[tuple[int, int]]:
        pts = list(self._minima)
        if self._cur_min is not None:
            pts.append(self._cur_min)
        return pts

    def _refit(self, ref_us: int) -> None:
        pts = self._points()
        if len(pts) < 3:
            self._fit = None
            return
        x = np.array([p[0] - ref_us for p in pts], dtype=np.float64)
        y = np.array([p[1] for p in pts], dtype=np.float64)
        slope = 0.0
        if x.max() - x.min() >= self.min_drift_span_us:
            slope = _lower_envelope_slope(x, y)
            if abs(slope) > self.max_drift:  # no crystal drifts that much: distrust it, keep the offset only
                slope = 0.0
        intercept = float(np.min(y - slope * x))  # the line touches the lowest point from below
        self._fit = (intercept, slope)

    def to_collector_us(self, device_time_us: int) -> int:
        """Collector time (Unix epoch, us) of a device timestamp."""
        if self._ref_us is None:
            raise RuntimeError("ClockAligner.to_collector_us called before any observation")
        if self._fit is None:
            pts = self._points()
            offset = min(p[1] for p in pts)
            return int(device_time_us + offset)
        intercept, slope = self._fit
        return int(round(device_time_us + intercept + slope * (device_time_us - self._ref_us)))

    @property
    def drift_ppm(self) -> float | None:
        """Estimated drift (collector minus device, ppm), or None before it can be estimated."""
        if self._fit is None or self._fit[1] == 0.0:
            return None
        return self._fit[1] * 1e6


def _lower_envelope_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Slope of the line under all points (x sorted or not) minimising the summed vertical distance.

    That line contains the edge of the lower convex hull that spans the mean of x.
    """
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    hull: list[int] = []
    for i in range(len(xs)):  # Andrew's monotone chain, lower hull
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (xs[b] - xs[a]) * (ys[i] - ys[a]) - (ys[b] - ys[a]) * (xs[i] - xs[a])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    if len(hull) < 2:
        return 0.0
    hx, hy = xs[hull], ys[hull]
    k = int(np.searchsorted(hx, x.mean(), side="right")) - 1
    k = min(max(k, 0), len(hull) - 2)
    dx = hx[k + 1] - hx[k]
    return float((hy[k + 1] - hy[k]) / dx) if dx > 0 else 0.0
