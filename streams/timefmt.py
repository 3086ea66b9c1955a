"""Wire timestamps: ISO-8601 UTC with milliseconds, `2026-11-26T10:00:00.000Z`.

The lifecycle works in integer epoch milliseconds; these two functions are the only
conversions, so a replay formats times byte for byte as the live run did.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


_EPOCH_DAY = _EPOCH.toordinal()
_fromiso = datetime.fromisoformat


def to_ms(stamp: str) -> int:
    """Parse a wire timestamp (any ISO-8601 with an offset) to epoch milliseconds.

    `...Z` stamps take a fast path of integer field arithmetic: this runs for nearly
    every input, hundreds of thousands of times a second.
    """
    if stamp[-1:] == "Z":
        t = _fromiso(stamp)
        return (
            (t.toordinal() - _EPOCH_DAY) * 86_400_000
            + t.hour * 3_600_000
            + t.minute * 60_000
            + t.second * 1000
            + t.microsecond // 1000
        )
    return _slow_to_ms(stamp)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as stamp `a` is before, at or after `b`.

    Canonical stamps (24 characters, `...mmmZ`) order as strings, which is the common
    case and needs no parsing.
    """
    if len(a) == 24 == len(b) and a[23] == "Z" == b[23]:
        return (a > b) - (a < b)
    x, y = to_ms(a), to_ms(b)
    return (x > y) - (x < y)


def _slow_to_ms(stamp: str) -> int:
    parsed = datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {stamp!r}")
    return (parsed - _EPOCH) // _MS


_minutes: dict[int, str] = {}


def from_ms(ms: int) -> str:
    """Format epoch milliseconds as the canonical wire timestamp (minute cached)."""
    minute, rest = divmod(ms, 60_000)
    prefix = _minutes.get(minute)
    if prefix is None:
        if len(_minutes) > 100_000:
            _minutes.clear()
        moment = _EPOCH + timedelta(minutes=minute)
        prefix = _minutes[minute] = f"{moment:%Y-%m-%dT%H:%M}"
    seconds, millis = divmod(rest, 1000)
    return f"{prefix}:{seconds:02d}.{millis:03d}Z"


def from_datetime(moment: datetime) -> str:
    return from_ms((moment.astimezone(UTC) - _EPOCH) // _MS)


def to_datetime(ms: int) -> datetime:
    """Naive UTC datetime, as stored in DATETIME(3) columns."""
    return (_EPOCH + timedelta(milliseconds=ms)).replace(tzinfo=None)
