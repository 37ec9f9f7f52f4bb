"""Reader for PhysioNet gaitpdb walk files (19 tab-separated columns, 100 Hz, newtons).

Columns: time, 8 left sensor forces, 8 right sensor forces, left total, right
total (format.txt). The sensors map to the ``gaitpdb8`` layout (positions from
format.txt, mirrored so lateral is positive on both feet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from insole_common.errors import ValidationError
from insole_common.layouts import GAITPDB8
from insole_common.recording import FootRecording, Recording

N_COLUMNS = 19


def read_gaitpdb(path: str | Path) -> Recording:
    p = Path(path)
    try:
        text = p.read_text(errors="replace")
    except OSError as exc:
        raise ValidationError(f"{p}: cannot read ({exc})", reason="bad_file") from exc
    rows = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not rows:
        raise ValidationError(f"{p}: empty file", reason="empty")
    # a truncated last line (fewer columns) is dropped; anything else malformed is an error
    if len(rows[-1]) != N_COLUMNS:
        rows = rows[:-1]
    if not rows or any(len(r) != N_COLUMNS for r in rows):
        raise ValidationError(f"{p}: expected {N_COLUMNS} columns per row (gaitpdb format)", reason="bad_format")
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise ValidationError(f"{p}: non-numeric value ({exc})", reason="bad_format") from exc
    t = data[:, 0]
    dt = np.diff(t)
    if t.size < 2 or not np.all(dt > 0):
        raise ValidationError(f"{p}: time column is not increasing", reason="bad_format")
    step_s = float(np.median(dt))
    rate_hz = round(1.0 / step_s, 6)
    # place rows on the uniform grid; skipped time stamps become NaN rows
    # every row is one sample; a time step of about k sample periods (k >= 2) means k-1 dropped samples
    idx = np.r_[0, np.cumsum(np.maximum(np.rint(np.diff(t) / step_s), 1))].astype(np.int64)
    n = int(idx[-1]) + 1
    feet = {}
    for side, cols, tot in (("L", slice(1, 9), 17), ("R", slice(9, 17), 18)):
        pressure = np.full((n, 8), np.nan)
        pressure[idx] = data[:, cols]
        total = np.full(n, np.nan)
        total[idx] = data[:, tot]
        feet[side] = FootRecording(side=side, sample_rate_hz=rate_hz, t0_s=float(t[0]), pressure=pressure,
                                   pressure_unit="N", layout=GAITPDB8, total_force_n=total)
    return Recording(feet=feet, source_format="gaitpdb", meta={"record": p.stem, "dropped_samples_n": int(n - len(idx))})
