"""The availability report, policy `sitewatch-1` (docs/api.md).

One pure function, `report()`: no I/O, no clock, no database. The API, the status pages
and any export call it with a site's events, its maintenance windows and a window, so
every figure a user sees is computed the same way.

All times are integer epoch milliseconds; the window is half-open `[start, end)`.
Every millisecond of the window falls in exactly one class, by precedence:
unknown > maintenance > down > seems_down > up. So the figures never overlap, never go
negative, and the figures of two adjacent windows add up to those of their union.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Final, NamedTuple, cast

from sitewatch.streams.enums import CheckType, Severity

POLICY: Final = "sitewatch-1"

#: check types whose events can be downtime; TLS expiry never is
AVAILABILITY_CHECKS: Final = frozenset({CheckType.HTTP, CheckType.TCP, CheckType.DNS})

Interval = tuple[int, int]
#: an event as the report reads it: (event_id, check_type, severity, started ms, ended ms
#: or None); an `EventSpan`, or a database row of those five columns
Span = tuple[str, str, int, int, int | None]
_AVAILABILITY: Final = frozenset(str(c) for c in AVAILABILITY_CHECKS)
_DOWN: Final = int(Severity.DOWN)
_SEEMS_DOWN: Final = int(Severity.SEEMS_DOWN)
_start: Final = itemgetter(0)
#: incidents in the answer's order: by start, then id
_by_start: Final = itemgetter(0, 1)
_by_start_id: Final = itemgetter(1, 0)
#: given events up to this many are put in place one by one; more, sorted all at once
_FEW: Final = 16
_end: Final = itemgetter(1)


class Policy(enum.StrEnum):
    SITEWATCH_1 = POLICY


class EventSpan(NamedTuple):
    """What the report needs of one `jetmon_events` row (a tuple: 10,000 of them are
    built per report, so they must be cheap).

    `severity` is the row's: a closed event keeps its last severity, and availability
    events only escalate (seems_down 3 -> down 4), so `severity >= DOWN` means "reached
    down". `ended_ms` is None while the event is open.
    """

    event_id: str
    check_type: str
    severity: int
    started_ms: int
    ended_ms: int | None

    @property
    def counts_as_down(self) -> bool:
        return self.check_type in AVAILABILITY_CHECKS and self.severity >= Severity.DOWN

    @property
    def is_seems_down_only(self) -> bool:
        return self.check_type in AVAILABILITY_CHECKS and self.severity == Severity.SEEMS_DOWN


class Incident(NamedTuple):
    event_id: str
    started_ms: int
    ended_ms: int | None
    #: this event's downtime inside the window (maintenance and unknown time excluded)
    down_ms: int


@dataclass(frozen=True, slots=True)
class Report:
    start_ms: int
    end_ms: int
    down_ms: int
    seems_down_ms: int
    maintenance_ms: int
    unknown_ms: int
    incidents: tuple[Incident, ...]
    policy: Policy = Policy.SITEWATCH_1

    @property
    def measured_ms(self) -> int:
        """The denominator: the window less maintenance and unknown time."""
        return self.end_ms - self.start_ms - self.maintenance_ms - self.unknown_ms

    @property
    def up_ms(self) -> int:
        return self.measured_ms - self.down_ms - self.seems_down_ms

    @property
    def uptime_ratio(self) -> float | None:
        measured = self.measured_ms
        return None if measured <= 0 else 1.0 - self.down_ms / measured

    @property
    def mttr_ms(self) -> float | None:
        """Mean downtime of the incidents closed inside the window."""
        closed = [
            i.down_ms
            for i in self.incidents
            if i.ended_ms is not None and i.ended_ms <= self.end_ms
        ]
        return sum(closed) / len(closed) if closed else None


class Timeline(NamedTuple):
    """Closed events classified once for many reports (the API keeps one per site):
    window-free, so only closed events (an open one's end is the window's)."""

    #: the merged time covered by events that reached down, and by seems-down ones
    down: list[Interval]
    seems: list[Interval]
    #: the events that reached down as (started ms, event id, ended ms), in that order
    incidents: list[tuple[int, str, int]]
    #: the longest of them: how long before a window an incident in it may begin
    longest_ms: int
    #: each of them as the incident of a window it lies inside, clear of excluded time
    whole: list[Incident]


EMPTY: Final = Timeline([], [], [], 0, [])


def timeline(events: Iterable[Span]) -> Timeline:
    """The Timeline of closed `events` (ValueError for an open one)."""
    down_events, down, seems = _classify(events, None)
    closed = cast(list[tuple[int, str, int]], down_events)  # no open one: it raised
    closed.sort(key=_by_start)
    longest = max((e[2] - e[0] for e in closed), default=0)
    whole = [Incident(eid, began, ended, ended - began) for began, eid, ended in closed]
    return Timeline(_merge(down), _merge(seems), closed, longest, whole)


def report(
    events: Iterable[Span],
    maintenance: Iterable[Interval],
    start_ms: int,
    end_ms: int,
    *,
    site_created_ms: int | None,
    first_event_ms: int | None,
    kept: Timeline = EMPTY,
) -> Report:
    """The `sitewatch-1` report of one site over `[start_ms, end_ms)`.

    `site_created_ms` is the site row's `created_at` and `first_event_ms` the
    `started_at` of the site's first event ever (not only of those given): the site is
    known from the earlier of the two, and time before that is unknown. `events` may be
    any superset of the events overlapping the window; the rest are ignored. `kept`, the
    `timeline` of other (closed) events, counts as if they were among `events`: the
    report is the same, without classifying them again.
    """
    if end_ms < start_ms:
        raise ValueError("the window ends before it starts")
    known = [t for t in (site_created_ms, first_event_ms) if t is not None]
    known_since = min(known) if known else end_ms
    unknown = _clip([(start_ms, known_since)], start_ms, end_ms)
    maint = _subtract(_clip(maintenance, start_ms, end_ms), unknown)
    excluded = _union(unknown, maint)

    extra, extra_down, extra_seems = _classify(events, end_ms)
    down = _subtract(_window(kept.down, extra_down, start_ms, end_ms), excluded)
    seems = _window(kept.seems, extra_seems, start_ms, end_ms)
    seems_only = _subtract(_subtract(seems, excluded), down)

    # the incidents: those given, and the kept ones in the window, found by bisection
    # (sorted by start, they begin at most `longest_ms` before they end)
    overlap = _Overlap(excluded)
    x_lo, x_hi = (excluded[0][0], excluded[-1][1]) if excluded else (end_ms, start_ms)

    def own(chosen: Iterable[tuple[int, str, int | None]]) -> list[Incident]:
        """Each incident's downtime: its time in the window less what is excluded
        (measured by prefix sums, only for one within the excluded time's span)."""
        out = []
        for began, eid, ended in chosen:
            lo = began if began > start_ms else start_ms
            hi = end_ms if ended is None or ended > end_ms else ended
            down_ms = hi - lo
            if lo < x_hi and hi > x_lo:
                down_ms -= overlap(lo, hi)
            out.append(Incident(eid, began, ended, down_ms))
        return out

    held, longest = kept.incidents, kept.longest_ms

    def at(t: int, lo: int = 0, hi: int = len(held)) -> int:
        """The first kept incident beginning at `t` or later, within [lo, hi]."""
        return bisect.bisect_left(held, (t,), lo, hi)

    # [first, inside) begin before the window; [inside, crossing) lie inside it; the rest
    # up to `beyond` begin in it and may end after it
    first, inside, beyond = at(start_ms - longest), at(start_ms), at(end_ms)
    crossing = max(inside, at(end_ms - longest, inside, beyond))
    # of those inside, only the ones in [near, past) can overlap the excluded time
    near = at(x_lo - longest, inside, crossing) if excluded else crossing
    past = at(x_hi, near, crossing) if excluded else crossing
    incidents = [
        *own(e for e in held[first:inside] if e[2] > start_ms),
        *kept.whole[inside:near],
        *own(held[near:past]),
        *kept.whole[past:crossing],
        *own(held[crossing:beyond]),
    ]
    given = [e for e in extra if e[0] < end_ms and (end_ms if e[2] is None else e[2]) > start_ms]
    if len(given) > _FEW:
        incidents = sorted([*incidents, *own(given)], key=_by_start_id)
    else:  # a few (the open events beside a timeline): each put in its place
        for inc in own(given):
            bisect.insort(incidents, inc, key=_by_start_id)
    return Report(
        start_ms=start_ms,
        end_ms=end_ms,
        down_ms=_measure(down),
        seems_down_ms=_measure(seems_only),
        maintenance_ms=_measure(maint),
        unknown_ms=_measure(unknown),
        incidents=tuple(incidents),
    )


def _classify(
    events: Iterable[Span], open_until: int | None
) -> tuple[list[tuple[int, str, int | None]], list[Interval], list[Interval]]:
    """The events that reached down as (start, id, end or None), and the intervals of
    those and of the seems-down ones, an open event's ending at `open_until`. One pass,
    plain locals: a report may read 10,000 events and must stay in milliseconds."""
    checks, down_at, seems_at = _AVAILABILITY, _DOWN, _SEEMS_DOWN
    down_events: list[tuple[int, str, int | None]] = []
    down: list[Interval] = []
    seems: list[Interval] = []
    for eid, check, severity, began, raw_end in events:
        if check not in checks:
            continue
        if raw_end is not None:
            ended = raw_end
        elif open_until is None:
            raise ValueError(f"event {eid} is open: a timeline holds closed events")
        else:
            ended = open_until
        if ended <= began:
            continue
        if severity >= down_at:
            down_events.append((began, eid, raw_end))
            down.append((began, ended))
        elif severity == seems_at:
            seems.append((began, ended))
    return down_events, down, seems


def _window(merged: list[Interval], extra: list[Interval], lo: int, hi: int) -> list[Interval]:
    """`merged` (sorted, disjoint) with `extra` added, inside [lo, hi): sorted, merged."""
    part = merged[
        bisect.bisect_right(merged, lo, key=_end) : bisect.bisect_left(merged, hi, key=_start)
    ]
    if len(extra) > _FEW:  # many (no timeline): all merged at once
        return _clip([*part, *extra], lo, hi)
    if part:  # only the two ends can stick out of the window
        a, b = part[0]
        part[0] = (lo if a < lo else a, b)
        a, b = part[-1]
        part[-1] = (a, hi if b > hi else b)
    for a, b in _clip(extra, lo, hi):  # each merged in where it falls
        i = bisect.bisect_left(part, a, key=_end)  # the first it touches or follows
        j = bisect.bisect_right(part, b, key=_start)  # past the last it touches
        if i < j:
            a, b = min(a, part[i][0]), max(b, part[j - 1][1])
        part[i:j] = [(a, b)]
    return part


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    return _clip(intervals, -(2**63), 2**63)


# -- interval arithmetic over sorted, disjoint, half-open [a, b) lists --------------------


class _Overlap:
    """Measure of `intervals` (sorted, disjoint) inside [a, b), in O(log n)."""

    def __init__(self, intervals: Sequence[Interval]) -> None:
        self.starts = [a for a, _ in intervals]
        self.ends = [b for _, b in intervals]
        self.before = [0]  # before[i]: total length of intervals[:i]
        for a, b in intervals:
            self.before.append(self.before[-1] + b - a)

    def upto(self, t: int) -> int:
        """Measure of the intervals before time t."""
        i = bisect.bisect_right(self.starts, t)
        if i == 0:
            return 0
        return self.before[i - 1] + min(t, self.ends[i - 1]) - self.starts[i - 1]

    def __call__(self, a: int, b: int) -> int:
        return self.upto(b) - self.upto(a) if self.starts else 0


def _clip(intervals: Iterable[Interval], lo: int, hi: int) -> list[Interval]:
    """Sorted, merged, inside [lo, hi), empty intervals dropped."""
    out: list[Interval] = []
    cur_a = cur_b = 0
    have = False
    for a, b in sorted(intervals):
        if a < lo:
            a = lo
        if b > hi:
            b = hi
        if a >= b:
            continue
        if have and a <= cur_b:
            if b > cur_b:
                cur_b = b
            continue
        if have:
            out.append((cur_a, cur_b))
        cur_a, cur_b, have = a, b, True
    if have:
        out.append((cur_a, cur_b))
    return out


def _union(x: Sequence[Interval], y: Sequence[Interval]) -> list[Interval]:
    lo = min((i[0] for i in (*x, *y)), default=0)
    hi = max((i[1] for i in (*x, *y)), default=0)
    return _clip([*x, *y], lo, hi)


def _subtract(x: Sequence[Interval], y: Sequence[Interval]) -> list[Interval]:
    """x minus y, both sorted and disjoint."""
    if not y or not x or y[-1][1] <= x[0][0] or y[0][0] >= x[-1][1]:
        return list(x)  # nothing of y within x's span (the usual case for the exclusions)
    # the intervals of x wholly before or after y's span are kept as they are (x is
    # sorted and disjoint: its ends ascend too)
    head = bisect.bisect_right(x, y[0][0], key=_end)
    tail = bisect.bisect_left(x, y[-1][1], key=_start)
    return [*x[:head], *_subtract_all(x[head:tail], y), *x[tail:]]


def _subtract_all(x: Sequence[Interval], y: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    j = 0
    for a, b in x:
        while j < len(y) and y[j][1] <= a:
            j += 1
        k = j
        cur = a
        while k < len(y) and y[k][0] < b:
            if y[k][0] > cur:
                out.append((cur, y[k][0]))
            cur = max(cur, y[k][1])
            k += 1
        if cur < b:
            out.append((cur, b))
    return out


def _measure(intervals: Iterable[Interval]) -> int:
    return sum(b - a for a, b in intervals)
