"""Map device clocks onto the collector's time base, and unwrap wrapping counters.

Model: ``arrival = device_time * (1 + drift) + offset + latency`` where latency
is never negative and jitters with the BLE connection interval. The *lower
envelope* of ``arrival - device_time`` is the latency-free line, so the aligner
keeps the minimum of ``arrival - device_time`` per window of device time and
fits a straight line (offset and drift) through the recent window minima. Both
insoles' minima sit on the same floor (one connection-event latency), so left
and right land on one time base to within a few milliseconds.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class CounterUnwrapper:
    """Turn a wrapping ``bits``-bit counter into a monotonically increasing integer.

    A step backwards of more than half the range is taken as a wrap; a small
    step backwards (a reordered or repeated packet) maps into the previous lap.
    """

    def __init__(self, bits: int) -> None:
        self.modulus = 1 << bits
        self._last: int | None = None

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


class ClockAligner:
    """Estimate offset and drift of one device clock from notification arrival times."""

    def __init__(self, *, window_s: float = 2.0, history_windows: int = 150) -> None:
        self.window_us = int(window_s * 1e6)
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
        if window != self._cur_window:
            if self._cur_min is not None:
                self._minima.append(self._cur_min)
                self._refit()
            self._cur_window = window
            self._cur_min = (device_time_us, diff)
        elif diff < self._cur_min[1]:
            self._cur_min = (device_time_us, diff)

    def _points(self) -> list[tuple[int, int]]:
        pts = list(self._minima)
        if self._cur_min is not None:
            pts.append(self._cur_min)
        return pts

    def _refit(self) -> None:
        pts = self._points()
        if len(pts) < 3:
            self._fit = None
            return
        x = np.array([p[0] - self._ref_us for p in pts], dtype=np.float64)
        y = np.array([p[1] for p in pts], dtype=np.float64)
        slope, intercept = np.polyfit(x, y, 1)
        # lower envelope: shift the line down onto the lowest point
        intercept += float(np.min(y - (slope * x + intercept)))
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
        return None if self._fit is None else self._fit[1] * 1e6
