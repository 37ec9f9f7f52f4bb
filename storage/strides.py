"""Reads of the ``strides`` table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from insole_common import metrics as C
from storage.store import Store


def session_strides(store: Store, session_id: str) -> pd.DataFrame:
    """A session's stored strides in heel-strike order, columns as :data:`insole_common.metrics.STRIDE_COLS` first."""
    rows = store.query("SELECT metrics_json FROM strides WHERE session_id = ? ORDER BY heel_strike_s, side", (session_id,))
    if rows.empty:
        return pd.DataFrame(columns=C.STRIDE_COLS)
    table = pd.DataFrame([json.loads(m) for m in rows["metrics_json"]])
    for col in C.STRIDE_COLS:
        if col not in table:
            table[col] = np.nan
    return table[C.STRIDE_COLS + [c for c in table.columns if c not in C.STRIDE_COLS]]
