"""What a day and a week are, everywhere: in the patient's time zone (UTC when none is stored).

A *day* is a calendar day ``YYYY-MM-DD`` in the patient's time zone (an IANA name such as
``Europe/Berlin``); a session belongs to the day its first sample falls on. A *week* is the ISO 8601 week
(Monday to Sunday) holding a day: ``YYYY-Www`` and its Monday. "This week" on a page is the seven days
ending today (:func:`week_window`). Summaries, flags, dashboards and exports all use these functions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from insole_common.errors import ValidationError

DEFAULT_TIME_ZONE = "UTC"


@lru_cache(maxsize=256)
def zone(name: str | None) -> ZoneInfo | timezone:
    """The time zone called ``name`` (None or "UTC": UTC); ValidationError for an unknown name."""
    if not name or name == DEFAULT_TIME_ZONE:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from exc


def day_of(time_us: int, time_zone: str | None = None) -> str:
    """The calendar day ``YYYY-MM-DD`` of a time (microseconds since the Unix epoch) in ``time_zone``."""
    return datetime.fromtimestamp(time_us / 1e6, tz=zone(time_zone)).strftime("%Y-%m-%d")


def day_start_us(day: str | date, time_zone: str | None = None) -> int:
    """Microseconds since the Unix epoch at the first instant of ``day`` in ``time_zone``."""
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return int(datetime(d.year, d.month, d.day, tzinfo=zone(time_zone)).timestamp() * 1_000_000)


def iso_week(day: str | date) -> tuple[str, str]:
    """The ISO 8601 week holding ``day``: (``YYYY-Www``, its Monday ``YYYY-MM-DD``)."""
    d = date.fromisoformat(day) if isinstance(day, str) else day
    year, week, _ = d.isocalendar()
    return f"{year}-W{week:02d}", (d - timedelta(days=d.weekday())).isoformat()


def week_days(day: str | date) -> tuple[str, str]:
    """First and last day (Monday, Sunday) of the ISO week holding ``day``."""
    monday = date.fromisoformat(iso_week(day)[1])
    return monday.isoformat(), (monday + timedelta(days=6)).isoformat()


def week_window(today: date) -> tuple[date, date]:
    """"This week" on a page: the seven days ending ``today`` (inclusive)."""
    return today - timedelta(days=6), today


def today_in(time_zone: str | None, now_us: int) -> date:
    """Today's date in ``time_zone`` at ``now_us``."""
    return date.fromisoformat(day_of(now_us, time_zone))
