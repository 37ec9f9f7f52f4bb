"""Reader for Moticon OpenGo text exports (``# time`` header, tab-separated, 100 Hz).

Channels are located by their header names, so exports with extra columns
(events, COP velocity) read the same way. Per foot:

* 16 pressures in N/cm^2, kept in that unit (``pressure_unit="N/cm^2"``; 1 N/cm^2 = 10 kPa).
  Moticon's sensor map is not published, so ``layout`` is None and the vendor
  COP is used instead of one recomputed from the pressures.
* vendor COP: X (-0.5 heel .. +0.5 toe) becomes ``cop_ap = X + 0.5``; Y is
  per-foot mirrored with +Y medial (the gait line ends under the hallux at
  larger Y on both feet), so ``cop_ml = -Y`` (lateral positive). The insole reports
  (0, 0) at low force; those samples become NaN.
* IMU in g and deg/s, stored as exported (see docs/analytics.md for the axis check).
* empty cells are missing samples (NaN rows), never zero force.

Vendor step events (codes 11/15/21/25 in ``left/right steps[]``, or
``Left/Right Events[]`` with 1 = heel strike) are returned in
``recording.meta["vendor_events"]`` as a list of ``{"side", "event", "t_s"}``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from insole_common.errors import ValidationError
from insole_common.recording import FootRecording, Recording

STEP_CODES = {11: ("L", "heel_strike"), 15: ("L", "toe_off"), 21: ("R", "heel_strike"), 25: ("R", "toe_off")}
SIDE_WORD = {"L": "left", "R": "right"}


def is_moticon_export(path: str | Path) -> bool:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            for _ in range(40):
                line = fh.readline()
                if not line:
                    return False
                if line.startswith("# time") and "left pressure 1" in line:
                    return True
    except OSError:
        return False
    return False


def _num(cells: list[str]) -> np.ndarray:
    out = np.full(len(cells), np.nan)
    for i, c in enumerate(cells):
        if c.strip():
            out[i] = float(c)
    return out


def read_moticon(path: str | Path) -> Recording:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ValidationError(f"{p}: cannot read ({exc})", reason="bad_file") from exc
    header_i = next((i for i, ln in enumerate(lines) if ln.startswith("# time")), None)
    if header_i is None:
        raise ValidationError(f"{p}: no '# time' channel header; not a Moticon text export", reason="bad_format")
    meta: dict = {}
    for ln in lines[:header_i]:
        m = re.match(r"#\s*([^:]+):\s*(.*)", ln)
        if m:
            meta[m.group(1).strip().lower().replace(" ", "_")] = m.group(2).strip()
    names = [re.sub(r"\[.*?\]$", "", c).strip() for c in lines[header_i].lstrip("#").split("\t")]
    col = {n: i for i, n in enumerate(names)}
    n_cols = len(names)
    rows = [ln.split("\t") for ln in lines[header_i + 1 :] if ln.strip()]
    # a truncated final line is dropped
    if rows and len(rows[-1]) < n_cols - 4:
        rows = rows[:-1]
    if not rows:
        raise ValidationError(f"{p}: no data rows", reason="empty")
    rows = [r + [""] * (n_cols - len(r)) if len(r) < n_cols else r[:n_cols] for r in rows]
    table = np.array(rows, dtype=object)
    try:
        t = np.array([float(x) for x in table[:, col["time"]]])
    except (ValueError, KeyError) as exc:
        raise ValidationError(f"{p}: bad time column ({exc})", reason="bad_format") from exc
    if t.size < 2 or not np.all(np.diff(t) > 0):
        raise ValidationError(f"{p}: time column is not increasing", reason="bad_format")
    step_s = float(np.median(np.diff(t)))
    rate_hz = round(1.0 / step_s, 6)
    # every row is one sample; a time step of about k sample periods (k >= 2) means k-1 dropped samples
    idx = np.r_[0, np.cumsum(np.maximum(np.rint(np.diff(t) / step_s), 1))].astype(np.int64)
    n = int(idx[-1]) + 1

    def grid(values: np.ndarray) -> np.ndarray:
        out = np.full((n,) + values.shape[1:], np.nan)
        out[idx] = values
        return out

    def block(prefix: str, k: int | None = None) -> np.ndarray:
        keys = [f"{prefix} {i}" for i in range(1, k + 1)] if k else [prefix]
        try:
            cells = table[:, [col[key] for key in keys]]
        except KeyError as exc:
            raise ValidationError(f"{p}: missing column {exc}", reason="bad_format") from None
        try:
            return grid(np.column_stack([_num(list(c)) for c in cells.T]))
        except ValueError as exc:
            raise ValidationError(f"{p}: non-numeric value ({exc})", reason="bad_format") from exc

    feet = {}
    for side, word in SIDE_WORD.items():
        if f"{word} pressure 1" not in col:
            continue
        pressure = block(f"{word} pressure", 16)
        missing = np.isnan(pressure).all(axis=1)
        pressure[np.isnan(pressure).any(axis=1)] = np.nan
        total = block(f"{word} total force")[:, 0]
        cop_x = block(f"{word} center of pressure X")[:, 0]
        cop_y = block(f"{word} center of pressure Y")[:, 0]
        no_cop = (cop_x == 0) & (cop_y == 0)
        acc = np.column_stack([block(f"{word} acceleration {a}")[:, 0] for a in "XYZ"])
        gyr = np.column_stack([block(f"{word} angular {a}")[:, 0] for a in "XYZ"])
        for arr in (total, cop_x, cop_y, acc, gyr):
            arr[missing] = np.nan
        feet[side] = FootRecording(
            side=side, sample_rate_hz=rate_hz, t0_s=float(t[0]), pressure=pressure, pressure_unit="N/cm^2",
            layout=None, channel_names=tuple(f"s{i:02d}" for i in range(1, 17)), total_force_n=total,
            cop_ap=np.where(no_cop, np.nan, cop_x + 0.5), cop_ml=np.where(no_cop, np.nan, -cop_y),
            acc_g=acc, gyro_dps=gyr,
        )
    if not feet:
        raise ValidationError(f"{p}: no left or right pressure columns", reason="bad_format")
    events = []
    for key in ("right steps", "left steps"):
        if key in col:
            for i, c in zip(idx, table[:, col[key]]):
                if c.strip():
                    side, ev = STEP_CODES.get(int(float(c)), (None, None))
                    if side:
                        events.append({"side": side, "event": ev, "t_s": float(t[0] + i * step_s)})
    for side, word in SIDE_WORD.items():
        key = f"{word.capitalize()} Events"
        if key in col:
            for i, c in zip(idx, table[:, col[key]]):
                if c.strip():
                    code = int(float(c))
                    events.append({"side": side, "event": "heel_strike" if code == 1 else "midstance_min" if code == 2 else str(code),
                                   "t_s": float(t[0] + i * step_s)})
    meta["vendor_events"] = sorted(events, key=lambda e: e["t_s"])
    meta["dropped_samples_n"] = {s: int(f.missing.sum()) for s, f in feet.items()}
    return Recording(feet=feet, source_format="moticon", meta=meta)
