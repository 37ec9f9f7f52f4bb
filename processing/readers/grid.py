"""Placing the rows of a text recording (one row per sample, a time column) on a uniform sample grid.

Shared by the gaitpdb and Moticon readers. A row that cannot be a sample is dropped and counted by reason
(``RowFilter``); the kept rows go on the grid:

* every kept row is one sample; a time step of about k sample periods (k >= 2) means k-1 dropped samples,
  which become NaN rows;
* a time stamp equal to the previous one (time stamps rounded to the sample period, e.g. 2 decimals at
  99.98 Hz) is the next sample, and the next longer step is taken as the catch-up, not as a gap;
* a row whose time is earlier than an earlier row's is dropped (``time_backwards``), as is a row without a
  numeric time (``bad_time``) and an exact repeat of the previous row (``repeated_row``);
* a corrupt time stamp that jumps ahead is dropped itself (``time_glitch``), not the good rows after it: a
  row later than its successor while its predecessor is not, and up to ``EDGE_GLITCH_ROWS`` rows at either
  end of the file cut off from the rest by a step of more than ``GLITCH_GAP_STEPS`` sample periods;
* a grid that would still be far larger than the rows it holds (``MAX_GRID_FACTOR``) is an error naming
  the jump, not a request for gigabytes of NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from insole_common.errors import ValidationError

#: why a row was dropped (the keys of ``rows_dropped_by_reason_n``)
DROP_REASONS = frozenset({"bad_columns", "non_numeric", "bad_time", "repeated_row", "time_backwards", "time_glitch",
                          "truncated_last_line"})
#: a step of more than this many sample periods cuts off the rows at the file's ends as glitches
GLITCH_GAP_STEPS = 1000
EDGE_GLITCH_ROWS = 3
#: grid length allowed per kept row (plus a constant): more means the times are wrong, not the data missing
MAX_GRID_FACTOR = 4
MAX_GRID_EXTRA_N = 100_000


@dataclass
class RowFilter:
    """Rows dropped so far, by reason (only reasons that occurred)."""

    dropped_n: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, mask: np.ndarray) -> np.ndarray:
        """Count the rows in ``mask`` under ``reason``; returns ``~mask`` (the rows to keep)."""
        assert reason in DROP_REASONS, reason
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
    """Mask of the rows of ``t`` to keep: a numeric time that is not a glitch ahead (see the module docstring)
    and not earlier than any kept row before it."""
    finite = np.isfinite(t)
    keep = rows.drop("bad_time", ~finite)
    i = np.flatnonzero(keep)
    tt = t[i]
    glitch = np.zeros(tt.size, dtype=bool)
    if tt.size >= 3:  # later than the next row, while the row before is not: this row's time is wrong
        glitch[1:-1] = (tt[1:-1] > tt[2:]) & (tt[:-2] <= tt[2:])
        glitch[0] = tt[0] > tt[1] and tt[1] <= tt[2]
    steps = np.diff(tt[~glitch])
    pos = steps[steps > 0]
    if pos.size and tt.size > 4 * EDGE_GLITCH_ROWS:
        big = np.flatnonzero(steps > GLITCH_GAP_STEPS * np.median(pos))
        ok_i = np.flatnonzero(~glitch)
        if big.size and big[0] + 1 <= EDGE_GLITCH_ROWS:  # a few rows at the start, then a huge jump
            glitch[ok_i[: big[0] + 1]] = True
        if big.size and ok_i.size - 1 - big[-1] <= EDGE_GLITCH_ROWS:  # a huge jump, then a few rows at the end
            glitch[ok_i[big[-1] + 1 :]] = True
    g = np.zeros(t.size, dtype=bool)
    g[i[glitch]] = True
    keep &= rows.drop("time_glitch", g)
    tf = np.where(keep, t, -np.inf)
    prev_max = np.r_[-np.inf, np.maximum.accumulate(tf)[:-1]]
    return keep & rows.drop("time_backwards", keep & (tf < prev_max))


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
    n = int(idx[-1]) + 1
    if n > MAX_GRID_FACTOR * t.size + MAX_GRID_EXTRA_N:
        j = int(np.argmax(dt))
        raise ValidationError(f"{where}: time jumps by {dt[j]:.2f} s after data row {j + 1} (t = {t[j]:.2f} s): "
                              f"{n} samples for {t.size} rows; the time column is wrong", reason="bad_format")
    return idx, n, step_s
