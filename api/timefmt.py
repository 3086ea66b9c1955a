"""Database times (naive UTC DATETIME(3)) <-> wire timestamps and epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

from sitewatch.streams import timefmt

_EPOCH = datetime(1970, 1, 1)


def to_ms(moment: datetime) -> int:
    """A naive UTC datetime (as stored) to epoch milliseconds."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def wire(moment: datetime) -> str:
    """A stored time in the wire format, `2026-11-26T10:00:00.000Z`."""
    return timefmt.from_ms(to_ms(moment))


def wire_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else wire(moment)


def parse(stamp: str) -> int:
    """A wire timestamp (any ISO-8601 with an offset) to epoch ms; ValueError if not one."""
    return timefmt.to_ms(stamp)


def from_ms(ms: int) -> str:
    return timefmt.from_ms(ms)


def db_time(ms: int) -> datetime:
    return timefmt.to_datetime(ms)
