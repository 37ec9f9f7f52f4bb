"""Readers on plausible variants of real exports: optional channel groups, bad rows, odd headers.

Every variant is built from a real file in ../shared/data; a bad row or value is dropped and counted in the
recording's meta (never the whole file), a malformed file is a ValidationError saying what is wrong.
"""

from __future__ import annotations

import json
import re
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from insole_common.errors import ValidationError
from insole_common.layouts import KC16
from insole_common.recording import FootRecording, Recording
from processing.analytics import analyze
from processing.readers.auto import detect_format, read_any
from processing.readers.kinetic import read_recording, write_recording
from processing.readers.moticon import read_moticon

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MOTICON = DATA / "moticon-opengo-sample"
WALKS = ("230927_102114.txt", "230927_102137.txt", "230927_102231.txt")
EVENTS = MOTICON / "walk_data_with_events" / "text_export.txt"
GAITPDB = DATA / "physionet-gaitpdb" / "GaCo01_01.txt"
GAITNDD = DATA / "physionet-gaitndd"
if not DATA.is_dir():  # CI has ../shared beside the repo: absence is a failure, not a skip
    raise RuntimeError(f"{DATA} is missing: the real recordings must sit beside the repository")


# ---- Moticon OpenGo -------------------------------------------------------------------------------------------

def moticon_parts(src: Path) -> tuple[list[str], list[str], list[list[str]]]:
    """Metadata lines, channel names and data rows (cells) of a Moticon text export."""
    lines = src.read_text(encoding="utf-8").split("\n")
    lines = lines[:-1] if lines[-1] == "" else lines
    hi = next(i for i, ln in enumerate(lines) if ln.startswith("# time"))
    return lines[:hi], lines[hi][2:].split("\t"), [ln.split("\t") for ln in lines[hi + 1:]]


def write_moticon(path: Path, meta: list[str], cols: list[str], rows: list[list[str]], keep=lambda c: True) -> Path:
    idx = [i for i, c in enumerate(cols) if c == "time" or keep(c)]
    out = [*meta, "# " + "\t".join(cols[i] for i in idx)]
    out += ["\t".join(r[i] if i < len(r) else "" for i in idx) for r in rows]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


CHANNEL_SELECTIONS = {
    "no_imu": lambda c: "acceleration" not in c and "angular" not in c,
    "no_angular": lambda c: "angular" not in c,
    "no_acceleration": lambda c: "acceleration" not in c,
    "no_cop": lambda c: "center of pressure" not in c,
    "no_total_force": lambda c: "total force" not in c,
    "no_steps": lambda c: "steps" not in c,
    "pressure_only": lambda c: re.match(r"(left|right) pressure \d+\[", c) is not None,
}


@pytest.mark.parametrize("selection", sorted(CHANNEL_SELECTIONS))
def test_moticon_channel_groups_are_optional(tmp_path: Path, selection: str):
    # OpenGo's export dialog lets every channel group be left out; the pressures are all the analytics need
    keep = CHANNEL_SELECTIONS[selection]
    src = MOTICON / WALKS[0]
    full = read_moticon(src)
    f = write_moticon(tmp_path / f"{selection}.txt", *moticon_parts(src), keep=keep)
    assert detect_format(f) == "moticon"
    rec = read_any(f)
    cols = moticon_parts(src)[1]
    for side, word in (("L", "left"), ("R", "right")):
        foot, ref = rec.feet[side], full.feet[side]
        assert np.array_equal(foot.pressure, ref.pressure, equal_nan=True)
        has = lambda group, word=word: any(keep(c) for c in cols if c.startswith(f"{word} {group}"))  # noqa: E731
        assert (foot.total_force_n is not None) == has("total force")
        assert (foot.cop_ap is not None) == has("center of pressure")
        assert (foot.acc_g is not None) == has("acceleration") and (foot.gyro_dps is not None) == has("angular")
    assert bool(rec.meta["vendor_events"]) == any(keep(c) for c in cols if "steps" in c)
    assert len(analyze(rec).strides) == len(analyze(full).strides) == 14
    # the project's own format keeps whatever the export had (acceleration without angular rate included)
    own = read_recording(write_recording(rec, tmp_path / "own"))
    for side, foot in rec.feet.items():
        for a, b in ((foot.acc_g, own.feet[side].acc_g), (foot.gyro_dps, own.feet[side].gyro_dps),
                     (foot.total_force_n, own.feet[side].total_force_n)):
            assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("walk", WALKS)
def test_moticon_without_total_force_walks_on_the_channel_sum(tmp_path: Path, walk: str):
    # no total force: the analytics' load is the sum of the 16 pressures (N/cm^2, zero-based): same strides
    full = analyze(read_moticon(MOTICON / walk)).strides
    f = write_moticon(tmp_path / walk, *moticon_parts(MOTICON / walk), keep=lambda c: "total force" not in c)
    rec = read_any(f)
    assert all(foot.total_force_n is None for foot in rec.feet.values())
    s = analyze(rec).strides
    assert len(s) == len(full)
    assert np.abs(s.heel_strike_s.to_numpy() - full.heel_strike_s.to_numpy()).max() <= 0.03
    assert abs(s.stride_time_s.mean() - full.stride_time_s.mean()) < 0.005


def test_moticon_right_insole_only_is_detected(tmp_path: Path):
    f = write_moticon(tmp_path / "right.txt", *moticon_parts(MOTICON / WALKS[0]), keep=lambda c: not c.startswith("left"))
    assert detect_format(f) == "moticon"
    rec = read_any(f)
    assert set(rec.feet) == {"R"}
    assert len(analyze(rec).strides) == 7


def test_moticon_text_in_an_event_column_is_skipped_and_counted(tmp_path: Path):
    meta, cols, rows = moticon_parts(EVENTS)
    ci = cols.index("Right Events[]")
    first = next(k for k, r in enumerate(rows) if r[ci].strip())
    rows[first][ci] = "HS"  # a custom event value
    rec = read_any(write_moticon(tmp_path / "ev.txt", meta, cols, rows))
    ref = read_moticon(EVENTS).meta["vendor_events"]
    assert rec.meta["vendor_events_skipped_n"] == 1
    assert len(rec.meta["vendor_events"]) == len(ref) - 1
    assert all(e in ref for e in rec.meta["vendor_events"])


def test_moticon_repeated_rows_and_time_stamps(tmp_path: Path):
    meta, cols, rows = moticon_parts(MOTICON / WALKS[0])
    ref = read_moticon(MOTICON / WALKS[0])
    # a repeated time stamp on a new sample (time rounded) is that sample; an exact repeat of a row is dropped
    dup_time = [*rows[:900], [rows[899][0], *rows[900][1:]], *rows[901:]]
    rec = read_any(write_moticon(tmp_path / "dup_time.txt", meta, cols, dup_time))
    assert np.array_equal(rec.feet["R"].pressure, ref.feet["R"].pressure, equal_nan=True)
    assert rec.meta["repeated_time_stamps_n"] == 1 and rec.meta["rows_dropped_n"] == 0
    rec = read_any(write_moticon(tmp_path / "dup_row.txt", meta, cols, [*rows[:900], rows[899], *rows[900:]]))
    assert np.array_equal(rec.feet["R"].pressure, ref.feet["R"].pressure, equal_nan=True)
    assert rec.meta["rows_dropped_by_reason_n"] == {"repeated_row": 1}


def test_moticon_metadata_line_starting_with_time(tmp_path: Path):
    meta, cols, rows = moticon_parts(MOTICON / WALKS[0])
    f = write_moticon(tmp_path / "tz.txt", [*meta[:1], "# time zone: CET", *meta[1:]], cols, rows)
    assert detect_format(f) == "moticon"
    assert read_any(f).feet["L"].n_samples == read_moticon(MOTICON / WALKS[0]).feet["L"].n_samples


def test_moticon_long_export_reads_in_bounded_memory(tmp_path: Path):
    # 10 minutes of the normal walk, repeated: parsed numerically, not as one Python string per cell
    meta, cols, rows = moticon_parts(MOTICON / WALKS[0])
    n = len(rows)
    body = "\n".join(f"{(k * n + j) * 0.01:.2f}\t" + "\t".join(r[1:]) for k in range(35) for j, r in enumerate(rows))
    f = tmp_path / "long.txt"
    f.write_text("\n".join([*meta, "# " + "\t".join(cols)]) + "\n" + body + "\n", encoding="utf-8")
    size_b = f.stat().st_size
    del body
    tracemalloc.start()
    try:
        rec = read_moticon(f)
        _, peak_b = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rec.feet["L"].n_samples == 35 * n
    # (measured: 56 MB for the 20 MB file; 284 MB when every cell was a Python string)
    assert peak_b < 4 * size_b, f"peak {peak_b / 1e6:.0f} MB for a {size_b / 1e6:.0f} MB file"


# ---- gaitpdb --------------------------------------------------------------------------------------------------

def gaitpdb_variant(tmp_path: Path, name: str) -> Path:
    rows = [ln.split("\t") for ln in GAITPDB.read_text().splitlines()]
    f = tmp_path / f"{name}.txt"
    if name == "bom":
        f.write_bytes(b"\xef\xbb\xbf" + GAITPDB.read_bytes())
        return f
    if name == "missing_column":
        rows = [*rows[:5000], rows[5000][:-1], *rows[5001:]]
    elif name == "extra_column":
        rows = [*rows[:5000], rows[5000] + ["0"], *rows[5001:]]
    elif name == "non_numeric":
        rows = [*rows[:5000], [*rows[5000][:3], "n/a", *rows[5000][4:]], *rows[5001:]]
    elif name == "repeated_row":
        rows = [*rows[:5000], rows[4999], *rows[5000:]]
    elif name == "repeated_time":
        rows = [*rows[:5000], [rows[4999][0], *rows[5000][1:]], *rows[5001:]]
    elif name == "time_2_decimals":
        rows = [[f"{float(r[0]):.2f}", *r[1:]] for r in rows]
    elif name == "time_backwards":
        rows = [*rows[:5000], ["1.0000", *rows[5000][1:]], *rows[5001:]]
    elif name == "time_forward_glitch":  # one corrupt time far ahead: that row goes, not the 7,000 after it
        rows = [*rows[:5000], ["800.0000", *rows[5000][1:]], *rows[5001:]]
    f.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    return f


@pytest.mark.parametrize("name, dropped, gap", [
    ("missing_column", {"bad_columns": 1}, True),
    ("extra_column", {"bad_columns": 1}, True),
    ("non_numeric", {"non_numeric": 1}, True),
    ("time_backwards", {"time_backwards": 1}, True),
    ("time_forward_glitch", {"time_glitch": 1}, True),
    ("repeated_row", {"repeated_row": 1}, False),
    ("repeated_time", {}, False),
    ("time_2_decimals", {}, False),
    ("bom", {}, False),
])
def test_gaitpdb_bad_rows_are_dropped_and_counted(tmp_path: Path, name: str, dropped: dict, gap: bool):
    ref = read_any(GAITPDB)
    rec = read_any(gaitpdb_variant(tmp_path, name))
    assert rec.meta["rows_dropped_n"] == sum(dropped.values())
    assert rec.meta["rows_dropped_by_reason_n"] == dropped
    for side in "LR":
        a, b = rec.feet[side].pressure, ref.feet[side].pressure.copy()
        assert a.shape == b.shape and rec.feet[side].sample_rate_hz == ref.feet[side].sample_rate_hz
        if gap:  # the dropped row is a missing sample, everything around it is kept
            b[5000] = np.nan
        assert np.array_equal(a, b, equal_nan=True)
    assert len(analyze(rec).strides) == len(analyze(ref).strides)


def test_gaitpdb_time_glitches_at_the_ends_and_impossible_grids(tmp_path: Path):
    rows = [ln.split("\t") for ln in GAITPDB.read_text().splitlines()]
    ref = read_any(GAITPDB)
    f = tmp_path / "ends.txt"
    # a last row 27 h in the future (a 10-million-sample grid before) and a first row from the future
    f.write_text("\n".join("\t".join(r) for r in [["5000.0000", *rows[0][1:]], *rows[1:-1], ["99999.99", *rows[-1][1:]]]))
    rec = read_any(f)
    assert rec.meta["rows_dropped_by_reason_n"] == {"time_glitch": 2}
    assert rec.feet["L"].n_samples == ref.feet["L"].n_samples - 2
    assert np.array_equal(rec.feet["L"].pressure, ref.feet["L"].pressure[1:-1], equal_nan=True)
    # times that are wrong throughout: a clear error naming the jump, not gigabytes of missing samples
    bad = rows[:6000] + [[f"{float(r[0]) + 1e5:.4f}", *r[1:]] for r in rows[6000:]]
    f.write_text("\n".join("\t".join(r) for r in bad))
    with pytest.raises(ValidationError, match="time jumps by"):
        read_any(f)


def test_gaitpdb_mostly_bad_rows_is_an_error(tmp_path: Path):
    f = tmp_path / "commas.txt"
    f.write_text(GAITPDB.read_text().replace("\t", ","))
    with pytest.raises(ValidationError, match="not gaitpdb samples"):
        read_any(f, "gaitpdb")


# ---- gaitndd --------------------------------------------------------------------------------------------------

def test_gaitndd_header_without_sample_count(tmp_path: Path):
    # WFDB lets the record line end after the sampling frequency: the samples are all those in the signal file
    for ext in ("let", "rit"):
        shutil.copy(GAITNDD / f"control1.{ext}", tmp_path / f"control1.{ext}")
    lines = (GAITNDD / "control1.hea").read_text().splitlines()
    (tmp_path / "control1.hea").write_text("\n".join([" ".join(lines[0].split()[:3]), *lines[1:]]) + "\n")
    rec = read_any(tmp_path / "control1.hea")
    ref = read_any(GAITNDD / "control1.hea")
    assert rec.meta["declared_samples"] is None and rec.meta["truncated"] is False
    for side in "LR":
        assert np.array_equal(rec.feet[side].pressure, ref.feet[side].pressure, equal_nan=True)
    # without a declared count, a signal shorter than the other is a truncated file
    (tmp_path / "control1.let").write_bytes((GAITNDD / "control1.let").read_bytes()[:30_000])
    rec = read_any(tmp_path / "control1.hea")
    assert rec.feet["L"].n_samples == 20_000 and rec.meta["truncated"] is True


# ---- kinetic format -------------------------------------------------------------------------------------------

def _break(meta: dict, how: str):
    if how == "list":
        return [meta]
    if how == "no_rate":
        del meta["sample_rate_hz"]
    elif how == "null_rate":
        meta["sample_rate_hz"] = None
    elif how == "text_rate":
        meta["sample_rate_hz"] = "100 Hz"
    elif how == "no_t0":
        del meta["feet"]["L"]["t0_s"]
    elif how == "no_channels":
        del meta["feet"]["L"]["channels"]
    elif how == "no_unit":
        del meta["feet"]["L"]["pressure_unit"]
    elif how == "lower_case_side":
        meta["feet"]["l"] = meta["feet"].pop("L")
    elif how == "feet_list":
        meta["feet"] = list(meta["feet"].values())
    elif how == "foot_not_object":
        meta["feet"]["L"] = 3
    return meta


@pytest.mark.parametrize("how", ["list", "no_rate", "null_rate", "text_rate", "no_t0", "no_channels", "no_unit",
                                 "lower_case_side", "feet_list", "foot_not_object"])
def test_kinetic_malformed_recording_json(tmp_path: Path, how: str):
    load = np.abs(np.sin(np.arange(2000) / 50.0))[:, None] * np.full(16, 40.0)
    rec = Recording(feet={s: FootRecording(s, 100.0, 0.0, load, "kPa", layout=KC16) for s in "LR"}, source_format="test")
    out = write_recording(rec, tmp_path / "rec")
    if how == "lower_case_side":
        (out / "L.parquet").rename(out / "l.parquet")
    meta = json.loads((out / "recording.json").read_text())
    (out / "recording.json").write_text(json.dumps(_break(meta, how)))
    with pytest.raises(ValidationError, match=r"recording\.json"):
        read_any(out)
