"""Reader for Moticon OpenGo text exports (``# time`` header, tab-separated, 100 Hz).

Channels are located by their header names, so exports with extra columns
(events, COP velocity) or another column order read the same way. Every channel
group is optional except ``time`` and the 16 pressures of at least one foot, as in
the OpenGo export dialog (a foot is present when its ``pressure 1`` column is). Per foot:

* 16 pressures in N/cm^2, kept in that unit (``pressure_unit="N/cm^2"``; 1 N/cm^2 = 10 kPa).
  Moticon's sensor map is not published, so ``layout`` is None and the vendor
  COP is used instead of one recomputed from the pressures.
* total force in N when exported, else ``total_force_n`` is None (the analytics then use
  the sum of the 16 pressures as the load).
* vendor COP, when exported: X (-0.5 heel .. +0.5 toe) becomes ``cop_ap = X + 0.5``; Y is
  per-foot mirrored with +Y medial (the gait line ends under the hallux at
  larger Y on both feet), so ``cop_ml = -Y`` (lateral positive). The insole reports
  (0, 0) at low force; those samples become NaN.
* IMU in g and deg/s, stored as exported (see docs/analytics.md for the axis check);
  acceleration and angular rate are each optional.
* empty cells are missing samples (NaN rows), never zero force; a pressure row with
  any empty or non-numeric cell is a missing sample.

Rows are placed on the sample grid by processing/readers/grid.py: a row without a numeric time,
an exact repeat of the previous row or a row whose time goes backwards is dropped, as is a
truncated last line; ``meta["rows_dropped_n"]`` and ``meta["rows_dropped_by_reason_n"]`` count them,
``meta["non_numeric_cells_n"]`` counts sensor cells that were not numbers (read as missing).

Vendor step events (codes 11/15/21/25 in ``left/right steps[]``, or
``Left/Right Events[]`` with 1 = heel strike) are returned in
``recording.meta["vendor_events"]`` as a list of ``{"side", "event", "t_s"}``. A value in
those columns that is not a number (e.g. a custom label) is skipped and counted in
``meta["vendor_events_skipped_n"]``.

The file is parsed by pandas' C parser straight into float columns (a 1-hour export of
~120 MB peaks at a few hundred MB, docs/analytics.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from insole_common.codec import Side
from insole_common.errors import ValidationError
from insole_common.recording import FootRecording, Recording
from processing.readers.grid import RowFilter, grid_index, rows_equal, time_filter

STEP_CODES = {11: ("L", "heel_strike"), 15: ("L", "toe_off"), 21: ("R", "heel_strike"), 25: ("R", "toe_off")}
SIDE_WORD: dict[Side, str] = {"L": "left", "R": "right"}
#: the channel header: "# time" followed by the channel names (tab-separated)
HEADER_RE = re.compile(r"#\s*time\t")
#: per-foot channel groups read as numbers (all optional but the pressures)
GROUPS = {
    "pressure": [f"pressure {i}" for i in range(1, 17)],
    "total": ["total force"],
    "cop": ["center of pressure X", "center of pressure Y"],
    "acc": [f"acceleration {a}" for a in "XYZ"],
    "gyr": [f"angular {a}" for a in "XYZ"],
}
EVENT_COLUMNS = [("right steps", None), ("left steps", None), ("Left Events", "L"), ("Right Events", "R")]


def is_moticon_export(path: str | Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            for _ in range(40):
                line = fh.readline()
                if not line:
                    return False
                if HEADER_RE.match(line) and ("left pressure 1" in line or "right pressure 1" in line):
                    return True
    except OSError:
        return False
    return False


def _header(p: Path) -> tuple[int, dict, list[str]]:
    """Line number of the channel header, the ``# key: value`` metadata before it and the channel names."""
    meta: dict = {}
    try:
        with open(p, encoding="utf-8-sig", errors="replace") as fh:
            for i, ln in enumerate(fh):
                if HEADER_RE.match(ln):
                    names = [re.sub(r"\[.*?\]$", "", c).strip() for c in ln.rstrip("\r\n").lstrip("#").split("\t")]
                    return i, meta, names
                if ln.strip() and not ln.startswith("#"):
                    break
                m = re.match(r"#\s*([^:]+):\s*(.*)", ln)
                if m:
                    meta[m.group(1).strip().lower().replace(" ", "_")] = m.group(2).strip()
    except OSError as exc:
        raise ValidationError(f"{p}: cannot read ({exc})", reason="bad_file") from exc
    raise ValidationError(f"{p}: no '# time' channel header; not a Moticon text export", reason="bad_format")


def _last_line_fields(p: Path) -> int:
    """Number of tab-separated fields on the last non-blank line of ``p``."""
    with open(p, "rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - 65536))
        lines = [ln for ln in fh.read().split(b"\n") if ln.strip()]
    return lines[-1].count(b"\t") + 1 if lines else 0


def read_moticon(path: str | Path) -> Recording:
    p = Path(path)
    header_i, meta, names = _header(p)
    col = {n: i for i, n in enumerate(names)}
    if "time" not in col:
        raise ValidationError(f"{p}: no time column", reason="bad_format")
    sides = [s for s, w in SIDE_WORD.items() if f"{w} pressure 1" in col]
    if not sides:
        raise ValidationError(f"{p}: no left or right pressure columns", reason="bad_format")
    num_names, groups = _numeric_channels(p, col, sides)
    ev_names = [k for k, _ in EVENT_COLUMNS if k in col]
    df = _read_rows(p, header_i, names, col, num_names + ev_names, ev_names)
    df, rows, dropped, non_numeric_n = _usable_rows(p, df, names, col, num_names)
    t = df[f"c{col['time']}"].to_numpy(np.float64)[rows]
    idx, n, step_s = grid_index(t, str(p))
    rate_hz = round(1.0 / step_s, 6)
    all_rows = len(rows) == len(df)

    def grid(keys: list[str]) -> np.ndarray:
        out = np.full((n, len(keys)), np.nan)
        for j, k in enumerate(keys):
            v = df[f"c{col[k]}"].to_numpy(np.float64)
            out[idx, j] = v if all_rows else v[rows]
        return out

    feet = {side: _foot(side, grid, groups, rate_hz=rate_hz, t0_s=float(t[0])) for side in sides}
    events, skipped_n = _vendor_events(df, col, ev_names, rows, idx, t0_s=float(t[0]), step_s=step_s)
    meta["vendor_events"] = sorted(events, key=lambda e: e["t_s"])
    meta["vendor_events_skipped_n"] = skipped_n
    meta["dropped_samples_n"] = {s: int(f.missing.sum()) for s, f in feet.items()}
    meta.update(dropped.meta(), non_numeric_cells_n=non_numeric_n,
                repeated_time_stamps_n=int(np.count_nonzero(np.diff(t) == 0)))
    return Recording(feet=feet, source_format="moticon", meta=meta)


def _numeric_channels(p: Path, col: dict[str, int], sides: list[Side]) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """The numeric channels to read: time, then per foot the groups that are present (all 16 pressures needed)."""
    num_names = ["time"]
    groups: dict[tuple[str, str], list[str]] = {}
    for side in sides:
        for g, chans in GROUPS.items():
            keys = [f"{SIDE_WORD[side]} {c}" for c in chans]
            present = [k in col for k in keys]
            if g == "pressure" and not all(present):
                missing = [k for k, ok in zip(keys, present, strict=True) if not ok]
                raise ValidationError(f"{p}: missing column {missing[0]!r}", reason="bad_format")
            if all(present):
                groups[side, g] = keys
                num_names += keys
    return num_names, groups


def _read_rows(p: Path, header_i: int, names: list[str], col: dict[str, int], use: list[str],
               ev_names: list[str]) -> pd.DataFrame:
    """The data rows of the channels ``use`` (columns ``c<i>``; event columns as text), by pandas' C parser."""
    try:
        return pd.read_csv(p, sep="\t", header=None, skiprows=header_i + 1, names=[f"c{i}" for i in range(len(names))],
                           usecols=[f"c{col[k]}" for k in use], dtype={f"c{col[k]}": object for k in ev_names},
                           encoding="utf-8", encoding_errors="replace", engine="c")
    except pd.errors.EmptyDataError:
        raise ValidationError(f"{p}: no data rows", reason="empty") from None
    except (OSError, pd.errors.ParserError, ValueError) as exc:
        raise ValidationError(f"{p}: cannot parse the data rows ({exc})", reason="bad_format") from exc


def _usable_rows(p: Path, df: pd.DataFrame, names: list[str], col: dict[str, int],
                 num_names: list[str]) -> tuple[pd.DataFrame, np.ndarray, RowFilter, int]:
    """Drop a truncated last line, read non-numeric sensor cells as missing (counted), and find the rows that go
    on the sample grid (no exact repeat of the row before, time moving forward). Returns the table, the usable
    rows' positions, the drop counts and the number of non-numeric cells."""
    dropped = RowFilter()
    # a truncated final line is dropped
    if len(df) and _last_line_fields(p) < len(names) - 4:
        df = df.iloc[:-1]
        dropped.drop("truncated_last_line", np.ones(1, dtype=bool))
    if df.empty:
        raise ValidationError(f"{p}: no data rows", reason="empty")
    # sensor cells that are not numbers are missing values, counted
    non_numeric_n = 0
    for k in num_names:
        c = df[f"c{col[k]}"]
        if not pd.api.types.is_float_dtype(c):
            v = pd.to_numeric(c, errors="coerce")
            non_numeric_n += int((v.isna() & c.notna()).sum())
            df[f"c{col[k]}"] = v
    # one column at a time, so no second copy of the table is made
    num = [f"c{col[k]}" for k in num_names]
    t_all = df[num[0]].to_numpy(np.float64)
    same_t = np.flatnonzero(t_all[1:] == t_all[:-1]) + 1  # only these rows can repeat the row before
    repeated = np.zeros(t_all.size, dtype=bool)
    repeated[same_t] = rows_equal(df.iloc[same_t][num].to_numpy(np.float64), df.iloc[same_t - 1][num].to_numpy(np.float64))
    rows = np.flatnonzero(dropped.drop("repeated_row", repeated))
    rows = rows[time_filter(t_all[rows], dropped)]
    if len(rows) < 2:
        raise ValidationError(f"{p}: {len(rows)} usable data rows (dropped: {dropped.dropped_n}; "
                              f"{non_numeric_n} non-numeric cells)", reason="bad_format")
    return df, rows, dropped, non_numeric_n


def _foot(side: Side, grid, groups: dict[tuple[str, str], list[str]], *, rate_hz: float, t0_s: float) -> FootRecording:
    """One foot on the sample grid (``grid(keys)`` places channels there): a pressure row with any missing cell
    is a missing sample, and so are that foot's other channels where every pressure is missing."""
    pressure = grid(groups[side, "pressure"])
    missing = np.isnan(pressure).all(axis=1)
    pressure[np.isnan(pressure).any(axis=1)] = np.nan
    ch = {g: grid(groups[side, g]) for g in ("total", "cop", "acc", "gyr") if (side, g) in groups}
    for arr in ch.values():
        arr[missing] = np.nan
    cop_ap = cop_ml = None
    if "cop" in ch:
        cop_x, cop_y = ch["cop"][:, 0], ch["cop"][:, 1]
        no_cop = (cop_x == 0) & (cop_y == 0)
        cop_ap, cop_ml = np.where(no_cop, np.nan, cop_x + 0.5), np.where(no_cop, np.nan, -cop_y)
    return FootRecording(
        side=side, sample_rate_hz=rate_hz, t0_s=t0_s, pressure=pressure, pressure_unit="N/cm^2",
        layout=None, channel_names=tuple(f"s{i:02d}" for i in range(1, 17)),
        total_force_n=ch["total"][:, 0] if "total" in ch else None, cop_ap=cop_ap, cop_ml=cop_ml,
        acc_g=ch.get("acc"), gyro_dps=ch.get("gyr"),
    )


def _vendor_events(df: pd.DataFrame, col: dict[str, int], ev_names: list[str], rows: np.ndarray, idx: np.ndarray, *,
                   t0_s: float, step_s: float) -> tuple[list[dict], int]:
    """The vendor's step events of the usable rows (``{"side", "event", "t_s"}``) and the number of cells skipped
    (not a number)."""
    events, skipped_n = [], 0
    for key, side in EVENT_COLUMNS:
        if key not in ev_names:
            continue
        cells = pd.Series(df[f"c{col[key]}"].to_numpy()[rows], dtype=object)
        text = cells.astype(str).str.strip().where(cells.notna(), "")
        code = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
        ok = np.abs(code) < 2**31  # False for NaN (empty or not a number) and inf
        skipped_n += int(((text != "").to_numpy() & ~ok).sum())
        for i, c in zip(idx[ok], code[ok].astype(np.int64), strict=True):
            t_s = float(t0_s + i * step_s)
            if side is None:
                ev_side, ev = STEP_CODES.get(int(c), (None, None))
                if ev_side:
                    events.append({"side": ev_side, "event": ev, "t_s": t_s})
            else:
                events.append({"side": side, "event": "heel_strike" if c == 1 else "midstance_min" if c == 2 else str(c),
                               "t_s": t_s})
    return events, skipped_n
