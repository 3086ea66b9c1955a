"""Database times (naive UTC DATETIME(3)) <-> wire timestamps and epoch milliseconds."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from sitewatch.streams import timefmt

_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """A naive UTC datetime (as stored) to epoch milliseconds."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _EPOCH) // _MS


def wire(moment: datetime) -> str:
    """A stored time in the wire format, `2026-11-26T10:00:00.000Z`."""
    return from_ms(to_ms(moment))


def parse(stamp: str) -> int:
    """A wire timestamp (any ISO-8601 with an offset) to epoch ms; ValueError if not one."""
    return timefmt.to_ms(stamp)


_SECONDS = [f"{i:02d}" for i in range(60)]
_MILLIS = [f".{i:03d}Z" for i in range(1000)]
_minutes: dict[int, str] = {}


@functools.lru_cache(maxsize=65_536)
def from_ms(ms: int) -> str:
    """Epoch ms as `2026-11-26T10:00:00.000Z`, as `streams.timefmt.from_ms` formats it
    (a test checks), but from lookup tables, and kept: an uptime report formats
    thousands, the same ones on each request for the same site (its kept events)."""
    minute, rest = divmod(ms, 60_000)
    prefix = _minutes.get(minute)
    if prefix is None:
        if len(_minutes) > 200_000:
            _minutes.clear()
        prefix = _minutes[minute] = f"{_EPOCH + timedelta(minutes=minute):%Y-%m-%dT%H:%M}:"
    seconds, millis = divmod(rest, 1000)
    return prefix + _SECONDS[seconds] + _MILLIS[millis]


def db_time(ms: int) -> datetime:
    return timefmt.to_datetime(ms)


def db_now() -> datetime:
    """Now as a DATETIME(3) column stores it: naive UTC, whole milliseconds."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
