"""The replay's time window: `--from`/`--to`, the `--lookback` before and `--grace` after.

Records are placed in it by their own time (`observed_at`, a tick's `at`, a command's
`issued_at`), never by the broker's write time (docs/replay.md, "What exactly is replayed").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import msgspec

from sitewatch.streams import records, timefmt

DEFAULT_LOOKBACK: Final = "48h"
DEFAULT_GRACE: Final = "2m"
DEFAULT_SLACK: Final = "10m"


class ReplayError(ValueError):
    """Bad options: the CLI prints it and exits 2."""


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_MS = {"": 1000, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """`90`, `90s`, `30m`, `48h`, `2d` -> milliseconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ReplayError(f"bad duration {text!r} (use e.g. 90s, 30m, 48h, 2d)")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_time_ms(text: str) -> int:
    """ISO-8601; a time without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReplayError(f"bad time {text!r} (ISO-8601, e.g. 2026-11-26T10:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return timefmt.to_ms(timefmt.from_datetime(moment))


# -- record times without a full decode ----------------------------------------------

_STAMP_FIELDS: Final = (b'"observed_at":"', b'"issued_at":"', b'"at":"')


class _Stamps(msgspec.Struct):
    observed_at: str | None = None
    issued_at: str | None = None
    at: str | None = None


_stamps_decoder: Final = msgspec.json.Decoder(_Stamps)


def record_stamp(value: bytes | None) -> str | None:
    """The wire time of an input (or a transition's `at`), None if it has none.

    A byte search finds it in the project's own compact JSON (sorted keys, no spaces);
    anything else falls back to a small decoder. Runs once per record replayed.
    """
    if not value:
        return None
    for name in _STAMP_FIELDS:
        i = value.find(name)
        if i >= 0:
            j = i + len(name)
            stamp = value[j : j + 24]
            if len(stamp) == 24 and stamp[23:] == b"Z" and value[j + 24 : j + 25] == b'"':
                return stamp.decode()
            break
    try:
        found = _stamps_decoder.decode(value)
    except Exception:  # any poison, a RecursionError from deep nesting included
        return None
    return found.observed_at or found.issued_at or found.at


def stamp_ms(stamp: str) -> int | None:
    try:
        return timefmt.to_ms(stamp)
    except ValueError:
        return None


class Bound:
    """A time bound compared against wire stamps, cheaply (canonical stamps as strings)."""

    __slots__ = ("ms", "stamp")

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.stamp = timefmt.from_ms(ms)

    def before(self, stamp: str) -> bool:
        """Is `stamp` earlier than this bound?"""
        if len(stamp) == 24 and stamp[23] == "Z":
            return stamp < self.stamp
        ms = stamp_ms(stamp)
        return ms is not None and ms < self.ms


@dataclass
class Window:
    start_ms: int  # --from
    end_ms: int  # --to (exclusive)
    lookback_ms: int
    grace_ms: int
    sites: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ReplayError("--to must be after --from")
        self.feed_from = Bound(self.start_ms - self.lookback_ms)
        self.feed_until = Bound(self.end_ms + self.grace_ms)
        self.keys = None if self.sites is None else {records.site_key(s) for s in self.sites}

    def wants(self, tr: records.Transition) -> bool:
        at = timefmt.to_ms(tr.at)
        in_range = self.start_ms <= at < self.end_ms
        return in_range and (self.sites is None or tr.site_id in self.sites)
