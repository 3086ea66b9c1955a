"""Wire timestamps: ISO-8601 UTC with milliseconds, `2026-11-26T10:00:00.000Z`.

The lifecycle works in integer epoch milliseconds; these two functions are the only
conversions, so a replay formats times byte for byte as the live run did.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(stamp: str) -> int:
    """Parse a wire timestamp (any ISO-8601 with an offset) to epoch milliseconds."""
    parsed = datetime.fromisoformat(stamp)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {stamp!r}")
    return (parsed - _EPOCH) // _MS


def from_ms(ms: int) -> str:
    """Format epoch milliseconds as the canonical wire timestamp."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def from_datetime(moment: datetime) -> str:
    return from_ms((moment.astimezone(UTC) - _EPOCH) // _MS)


def to_datetime(ms: int) -> datetime:
    """Naive UTC datetime, as stored in DATETIME(3) columns."""
    return (_EPOCH + timedelta(milliseconds=ms)).replace(tzinfo=None)
