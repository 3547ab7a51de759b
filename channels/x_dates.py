"""X's v1.1 `created_at` ("Wed Oct 10 20:19:24 +0000 2018"), read without strptime.

Every Account Activity webhook carries one per post; datetime.strptime took about 15 µs of the
service's CPU for each (it re-reads the format and takes a lock every call), a few per cent of
a flood's cost. Anything not in exactly this shape gets None, and the caller falls back to
strptime.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Final

__all__ = ["created_at_time"]

_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def created_at_time(text: str) -> datetime | None:
    """The aware time in `text`, or None when it is not in X's created_at shape."""
    parts = text.split(" ")
    if len(parts) != 6:
        return None
    _weekday, month, day, clock, offset, year = parts
    fields = clock.split(":")
    numbers = (day, year, *fields, offset[1:])
    if (
        month not in _MONTHS
        or len(fields) != 3
        or len(offset) != 5
        or offset[0] not in "+-"
        or not all(number.isascii() and number.isdigit() for number in numbers)
    ):
        return None
    minutes = int(offset[1:3]) * 60 + int(offset[3:])
    zone = (
        UTC
        if not minutes
        else timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes))
    )
    try:
        return datetime(
            int(year),
            _MONTHS[month],
            int(day),
            int(fields[0]),
            int(fields[1]),
            int(fields[2]),
            tzinfo=zone,
        )
    except ValueError:  # "Feb 30", "25:00:00"
        return None
