"""Placing the rows of a text recording (one row per sample, a time column) on a uniform sample grid.

Shared by the gaitpdb and Moticon readers. A row that cannot be a sample is dropped and counted by reason
(``RowFilter``); the kept rows go on the grid:

* every kept row is one sample; a time step of about k sample periods (k >= 2) means k-1 dropped samples,
  which become NaN rows;
* a time stamp equal to the previous one (time stamps rounded to the sample period, e.g. 2 decimals at
  99.98 Hz) is the next sample, and the next longer step is taken as the catch-up, not as a gap;
* a row whose time is earlier than an earlier row's is dropped (``time_backwards``), as is a row without a
  numeric time (``bad_time``) and an exact repeat of the previous row (``repeated_row``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from insole_common.errors import ValidationError


@dataclass
class RowFilter:
    """Rows dropped so far, by reason (only reasons that occurred)."""

    dropped_n: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, mask: np.ndarray) -> np.ndarray:
        """Count the rows in ``mask`` under ``reason``; returns ``~mask`` (the rows to keep)."""
        n = int(np.count_nonzero(mask))
        if n:
            self.dropped_n[reason] = self.dropped_n.get(reason, 0) + n
        return ~mask

    @property
    def total_n(self) -> int:
        return sum(self.dropped_n.values())

    def meta(self) -> dict:
        """``rows_dropped_n`` (total) and ``rows_dropped_by_reason_n`` ({reason: rows}) for ``Recording.meta``
        (``*_n`` keys of the meta reach summary.json's ``reader_quality``)."""
        return {"rows_dropped_n": self.total_n, "rows_dropped_by_reason_n": dict(self.dropped_n)}


def rows_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise equality of two 2-D float arrays, NaN equal to NaN."""
    return ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1)


def repeated_rows(values: np.ndarray) -> np.ndarray:
    """True for each row of the 2-D ``values`` equal to the row before it (NaN equal to NaN)."""
    out = np.zeros(values.shape[0], dtype=bool)
    if values.shape[0] > 1:
        out[1:] = rows_equal(values[1:], values[:-1])
    return out


def time_filter(t: np.ndarray, rows: RowFilter) -> np.ndarray:
    """Mask of the rows of ``t`` to keep: a numeric time not earlier than every row before it."""
    finite = np.isfinite(t)
    keep = rows.drop("bad_time", ~finite)
    tf = np.where(finite, t, -np.inf)
    prev_max = np.r_[-np.inf, np.maximum.accumulate(tf)[:-1]]
    return keep & rows.drop("time_backwards", finite & (tf < prev_max))


def grid_index(t: np.ndarray, where: str) -> tuple[np.ndarray, int, float]:
    """Grid index of each row of the non-decreasing times ``t``, the grid length and the sample period in s."""
    dt = np.diff(t)
    pos = dt[dt > 0]
    if pos.size == 0:
        raise ValidationError(f"{where}: time column is not increasing", reason="bad_format")
    step_s = float(np.median(pos))
    raw = np.r_[0, np.cumsum(np.rint(dt / step_s))].astype(np.int64)
    k = np.arange(t.size, dtype=np.int64)
    # a row is at least one sample after the previous one; a zero step is made up by the next longer one
    idx = k + np.maximum.accumulate(raw - k)
    return idx, int(idx[-1]) + 1, step_s
