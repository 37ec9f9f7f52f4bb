"""Reader for PhysioNet gaitpdb walk files (19 tab-separated columns, 100 Hz, newtons).

Columns: time, 8 left sensor forces, 8 right sensor forces, left total, right
total (format.txt). The sensors map to the ``gaitpdb8`` layout (positions from
format.txt, mirrored so lateral is positive on both feet).

A row that is not a sample (not 19 columns, e.g. a truncated last line; a non-numeric value; an exact
repeat of the previous row; a time earlier than an earlier row's) is dropped and becomes a missing
sample; ``meta["rows_dropped_n"]`` counts them and ``meta["rows_dropped_by_reason_n"]`` says why
(processing/readers/grid.py). A file where more than half of the rows are bad is rejected. A UTF-8 BOM
is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from insole_common.codec import Side
from insole_common.errors import ValidationError
from insole_common.layouts import GAITPDB8
from insole_common.recording import FootRecording, Recording
from processing.readers.grid import RowFilter, grid_index, repeated_rows, time_filter

N_COLUMNS = 19


def read_gaitpdb(path: str | Path) -> Recording:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise ValidationError(f"{p}: cannot read ({exc})", reason="bad_file") from exc
    rows = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not rows:
        raise ValidationError(f"{p}: empty file", reason="empty")
    dropped = RowFilter()
    good = [r for r in rows if len(r) == N_COLUMNS]
    dropped.drop("bad_columns", np.ones(len(rows) - len(good), dtype=bool))
    # one conversion for the whole table; a cell that is not a number makes its row bad (the slower
    # cell-by-cell conversion only runs when the fast one finds such a cell)
    try:
        data = np.array(good, dtype=np.float64) if good else np.zeros((0, N_COLUMNS))
    except ValueError:
        data = pd.DataFrame(good, dtype=object).apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    keep = dropped.drop("non_numeric", np.asarray(np.isnan(data).any(axis=1)))
    data = data[keep]
    data = data[dropped.drop("repeated_row", repeated_rows(data))]
    data = data[time_filter(data[:, 0], dropped)]
    if dropped.total_n > len(rows) / 2:
        raise ValidationError(f"{p}: {dropped.total_n} of {len(rows)} rows are not gaitpdb samples "
                              f"({N_COLUMNS} numeric columns, increasing time): {dropped.dropped_n}", reason="bad_format")
    if len(data) < 2:
        raise ValidationError(f"{p}: fewer than 2 samples", reason="empty")
    t = data[:, 0]
    idx, n, step_s = grid_index(t, str(p))
    rate_hz = round(1.0 / step_s, 6)
    feet: dict[Side, FootRecording] = {}
    columns: tuple[tuple[Side, slice, int], ...] = (("L", slice(1, 9), 17), ("R", slice(9, 17), 18))
    for side, cols, tot in columns:
        pressure = np.full((n, 8), np.nan)
        pressure[idx] = data[:, cols]
        total = np.full(n, np.nan)
        total[idx] = data[:, tot]
        feet[side] = FootRecording(side=side, sample_rate_hz=rate_hz, t0_s=float(t[0]), pressure=pressure,
                                   pressure_unit="N", layout=GAITPDB8, total_force_n=total)
    meta = {"record": p.stem, "dropped_samples_n": int(n - len(idx)), **dropped.meta(),
            "repeated_time_stamps_n": int(np.count_nonzero(np.diff(t) == 0))}
    return Recording(feet=feet, source_format="gaitpdb", meta=meta)
