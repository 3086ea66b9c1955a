"""The status pages' uptime figures: the `sitewatch-1` report of each UTC day (the 90
bars) and of the site page's windows, all computed by `availability.report` itself.

Pure: no I/O, no clock. The one saving over calling the report for every day of every
site is that a *clear* day (no event, no maintenance window, the site known since
before it began) has the same figures as any other clear day of the same length, so
the report runs once for it and the answer is reused: a status page of 50 sites then
costs a few report calls per site instead of 90 (tests/api/test_daily.py checks the
result equals one report per day on random inputs).
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

from .availability import Interval, Report, Span, report

DAY_MS: Final = 86_400_000
#: bars on the status page: today (so far) and the 89 UTC days before it
DAYS: Final = 90
#: the site page's windows, ending now: label, length
WINDOWS: Final = (
    ("24 h", DAY_MS),
    ("7 d", 7 * DAY_MS),
    ("30 d", 30 * DAY_MS),
    ("90 d", 90 * DAY_MS),
)
#: a day with downtime below this share of its measured time is a partial outage
PARTIAL_BELOW: Final = 0.01


class DayKind(enum.StrEnum):
    """How a bar is drawn, and the word that says it (never colour alone)."""

    UP = "up"
    PARTIAL = "partial"
    DOWN = "down"
    MAINTENANCE = "maintenance"
    NO_DATA = "no-data"


class Day(NamedTuple):
    start_ms: int
    end_ms: int
    down_ms: int
    seems_down_ms: int
    maintenance_ms: int
    unknown_ms: int
    measured_ms: int
    uptime_ratio: float | None
    incidents: int

    @property
    def kind(self) -> DayKind:
        if self.measured_ms <= 0:
            return DayKind.MAINTENANCE if self.maintenance_ms > 0 else DayKind.NO_DATA
        if self.down_ms == 0:
            return DayKind.UP
        return DayKind.PARTIAL if self.down_ms < PARTIAL_BELOW * self.measured_ms else DayKind.DOWN


def day_windows(now_ms: int, days: int = DAYS) -> list[Interval]:
    """`days` UTC days ending with today, today's ending now (oldest first)."""
    today = now_ms // DAY_MS * DAY_MS
    out = [(today - k * DAY_MS, today - (k - 1) * DAY_MS) for k in range(days - 1, 0, -1)]
    out.append((today, max(today, now_ms)))
    return out


def _day_of(start_ms: int, end_ms: int, rep: Report) -> Day:
    return Day(
        start_ms,
        end_ms,
        rep.down_ms,
        rep.seems_down_ms,
        rep.maintenance_ms,
        rep.unknown_ms,
        rep.measured_ms,
        rep.uptime_ratio,
        len(rep.incidents),
    )


def daily(
    spans: Iterable[Span],
    maintenance: Sequence[Interval],
    windows: Sequence[Interval],
    *,
    site_created_ms: int | None,
    first_event_ms: int | None,
    clear_days: dict[int, Report] | None = None,
) -> list[Day]:
    """One `Day` per window (sorted, disjoint, as `day_windows` gives them).

    `spans` may hold any events (a superset of those overlapping the windows is fine);
    `clear_days` is a cache of clear-day reports by length, shared across the sites of
    one page.
    """
    if not windows:
        return []
    cache = {} if clear_days is None else clear_days
    lo, hi = windows[0][0], windows[-1][1]
    buckets: list[list[Span]] = [[] for _ in windows]
    starts = [s for s, _ in windows]
    for span in spans:
        began, ended = span[3], span[4]
        end = hi if ended is None else ended
        if began >= hi or end <= lo:
            continue
        first = max(0, _index(starts, began))
        for i in range(first, len(windows)):
            if windows[i][0] >= end:
                break
            buckets[i].append(span)
    known = [t for t in (site_created_ms, first_event_ms) if t is not None]
    known_since = min(known) if known else None
    out = []
    for (start, end), bucket in zip(windows, buckets, strict=True):
        clear = (
            not bucket
            and known_since is not None
            and known_since <= start
            and not any(a < end and b > start for a, b in maintenance)
        )
        if clear:
            rep = cache.get(end - start)
            if rep is None:
                rep = cache[end - start] = report(
                    (), (), start, end, site_created_ms=start, first_event_ms=None
                )
        else:
            rep = report(
                bucket,
                maintenance,
                start,
                end,
                site_created_ms=site_created_ms,
                first_event_ms=first_event_ms,
            )
        out.append(_day_of(start, end, rep))
    return out


def windows_ending(now_ms: int) -> list[tuple[str, Interval]]:
    """The site page's windows (24 h, 7 d, 30 d, 90 d), each ending now."""
    return [(label, (max(0, now_ms - length), now_ms)) for label, length in WINDOWS]


def _index(starts: Sequence[int], t: int) -> int:
    """The window holding time t (windows are contiguous), by bisection."""
    return bisect.bisect_right(starts, t) - 1
