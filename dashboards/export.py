"""De-identified downloads for researchers (a stop-gap until the export issue defines the formats).

* per-stride CSV: ``session``, ``subject``, ``cohort``, ``day`` (research labels and the UTC
  day) followed by :data:`processing.analytics.consts.STRIDE_COLS`; floats written with
  ``repr`` precision, empty for missing; LF line ends.
* raw Parquet: both feet of one session, from the store's de-duplicated raw batches, with
  ``session`` (research label), ``side``, ``t_s`` (seconds since the session start) and the
  pressure/IMU columns of :mod:`processing.archive`. Dropped: ``device_id`` (identifies the
  hardware), ``seq`` (device frame counter), ``t_us`` (absolute time). The ``kinetic.*``
  schema metadata (rate, layout, units, scales) is kept; nothing else.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from processing.analytics import consts as C
from processing.archive import batches_to_table
from processing.store import Store

CSV_ID_COLS = ["session", "subject", "cohort", "day"]
#: columns removed from the raw Parquet
DROPPED_RAW_COLS = ("session_id", "device_id", "seq", "t_us")


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not np.isfinite(v) else repr(v)
    return str(v)


def strides_csv(store: Store, session_id: str, label: str, subject: str, cohort: str, day: str) -> bytes:
    from dashboards.data import strides

    table = strides(store, session_id)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_ID_COLS + C.STRIDE_COLS)
    for row in table[C.STRIDE_COLS].itertuples(index=False, name=None):
        writer.writerow([label, subject, cohort, day] + [_cell(v.item() if isinstance(v, np.generic) else v) for v in row])
    return buf.getvalue().encode("utf-8")


def raw_parquet(store: Store, session_id: str, label: str, start_us: int) -> bytes:
    batches = list(store.session_batches(session_id))
    parts = []
    meta: dict[bytes, bytes] = {}
    for side in ("L", "R"):
        mine = sorted((b for b in batches if b.side == side), key=lambda b: b.first_seq)
        if not mine:
            continue
        table = batches_to_table(session_id, mine)
        meta = {k: v for k, v in (table.schema.metadata or {}).items() if k.startswith(b"kinetic.")}
        t_s = pa.array((table.column("t_us").to_numpy() - start_us) / 1e6, pa.float64())
        keep = [n for n in table.column_names if n not in DROPPED_RAW_COLS and n != "side"]
        cols = {"session": pa.array([label] * table.num_rows, pa.string()),
                "side": pa.array([side] * table.num_rows, pa.string()), "t_s": t_s}
        cols.update({n: table.column(n) for n in keep})
        parts.append(pa.table(cols))
    if parts:
        out = pa.concat_tables(parts, promote_options="default")
    else:
        out = pa.table({"session": pa.array([], pa.string()), "side": pa.array([], pa.string()),
                        "t_s": pa.array([], pa.float64())})
    out = out.replace_schema_metadata(meta)
    sink = io.BytesIO()
    pq.write_table(out, sink, compression="zstd")
    return sink.getvalue()
