"""The sign-in rate limit's counts (table ``signin_failures``, :data:`storage.schema.SIGNIN_TABLE_SQL`):
per key (an HMAC made by :mod:`dashboards.signin_limit`) the failures counted and the last one's time."""

from __future__ import annotations

from collections.abc import Iterable

from storage.store import Store


def failures(store: Store, keys: Iterable[str]) -> list[tuple[str, int, int]]:
    """``(key, failures, last_us)`` of those of ``keys`` that have a count."""
    keys = list(keys)
    if not keys:
        return []
    placeholders = ", ".join("?" * len(keys))
    rows = store.query(f"SELECT key, failures, last_us FROM signin_failures WHERE key IN ({placeholders})",  # noqa: S608 - only ? placeholders
                       tuple(keys))
    return [(str(k), int(n), int(t)) for k, n, t in rows.itertuples(index=False, name=None)]


def count_failure(store: Store, keys: Iterable[str], now_us: int, stale_us: int) -> None:
    """One more failure for each of ``keys`` at ``now_us`` (a count last touched before ``stale_us`` starts again
    at 1), and forget every count last touched before ``stale_us``; one transaction."""
    with store.transaction():
        for key in keys:
            store.execute(
                "INSERT INTO signin_failures (key, failures, last_us) VALUES (?, 1, ?) ON CONFLICT (key) DO UPDATE "
                "SET failures = CASE WHEN signin_failures.last_us < ? THEN 1 ELSE signin_failures.failures + 1 END, "
                "last_us = excluded.last_us", (key, now_us, stale_us))
        store.execute("DELETE FROM signin_failures WHERE last_us < ?", (stale_us,))


def clear(store: Store, key: str) -> None:
    store.execute("DELETE FROM signin_failures WHERE key = ?", (key,))
