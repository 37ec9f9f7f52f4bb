"""Byte-exact golden exports of one small session, in every format (issue 7).

The session: 2 s of bilateral kc16 + IMU frames written into a raw archive exactly as the
processing service writes it (tests.fixtures.research), with a fixed two-stride table and fixed
labels, so the export's bytes depend only on the export code. Text files (CSV, TSV, JSON,
README) must match byte for byte. Parquet files embed the writing library's version in
their footer, so for them the schema, metadata and every value must match instead.

After an intended format change, regenerate with ``KINETIC_UPDATE_GOLDEN=1 pytest
tests/test_export_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from insole_common import metrics as C
from research.deid import Subject
from research.export import ExportSession, write_export
from research.provenance import database_source
from research.samples import archive_streams
from storage.archive import RawArchive
from tests.fixtures.research import write_archive_session

GOLDEN = Path(__file__).parent / "data" / "export-golden"
START_US = 1_790_000_000_000_000  # 2026-09-21T13:33:20Z
SUBJECT = Subject(label="S0123abcd", cohort="pilot", date_shift_days=-7 * 5300)
STRIDES = pd.DataFrame({
    C.SIDE: ["L", "R"], C.HEEL_STRIKE_S: [0.02, 0.57], C.TOE_OFF_S: [0.702, 1.252],
    C.NEXT_HEEL_STRIKE_S: [1.12, 1.67], C.STRIDE_TIME_S: [1.1, 1.1], C.STANCE_TIME_S: [0.682, 0.682],
    C.SWING_TIME_S: [0.418, 0.418], C.STANCE_PCT: [62.0, 62.0], C.CADENCE_STEPS_PER_MIN: [109.09, 109.09],
    C.STRIDE_LENGTH_M: [1.31, float("nan")], C.COP_ML_MEAN_FW: [0.031, -0.012],
})


def _export(tmp_path: Path, fmt: str) -> Path:
    archive = RawArchive(tmp_path / "archive")
    paths = write_archive_session(archive, hours=2 / 3600, patient="p", session_id="s", start_us=START_US, seed=1)
    session = ExportSession(subject=SUBJECT, label="R00aa11bb22cc", streams=lambda: archive_streams(paths, START_US),
                            strides=lambda: STRIDES, start=SUBJECT.shift_time_us(START_US), duration_s=2.0)
    return write_export([session], tmp_path / fmt, fmt, software="kinetic-chain (golden)", progress=False,
                        source=database_source("sqlite", session="s")).out


@pytest.mark.parametrize("fmt", ["parquet", "csv", "bids"])
def test_export_matches_golden_files(tmp_path, fmt):
    out = _export(tmp_path, fmt)
    golden = GOLDEN / fmt
    if os.environ.get("KINETIC_UPDATE_GOLDEN"):
        shutil.rmtree(golden, ignore_errors=True)
        shutil.copytree(out, golden)
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    want = sorted(str(p.relative_to(golden)) for p in golden.rglob("*") if p.is_file())
    assert made == want
    for rel in made:
        a, b = out / rel, golden / rel
        if rel.endswith(".parquet"):
            ta, tb = pq.read_table(a), pq.read_table(b)
            assert ta.schema.equals(tb.schema, check_metadata=True), rel
            assert ta.equals(tb), rel
        else:
            assert a.read_bytes() == b.read_bytes(), rel
