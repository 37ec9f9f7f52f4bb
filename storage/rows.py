"""Small helpers over query results shared by the storage modules."""

from __future__ import annotations

from storage.base import StoreBase


def first_row(store: StoreBase, sql: str, params: tuple) -> dict | None:
    """The first row of a query as a dict of column -> value, or None when it has none."""
    rows = store.query(sql, params)
    return None if rows.empty else rows.iloc[0].to_dict()
