"""The uptime report's reads, with each site's closed events kept between requests
(ADR 7).

A closed event row never changes (invariant 7: a trigger refuses the update), and every
change the sink makes to a site's events comes with a new row of `jetmon_event_transitions`
in the same transaction (its `id` ascends; one sink writes a site at a time). So the
site's largest transition `id` is a version of its events: while it stays, so do they.
A request reads, in one round trip of index lookups, that version and the site's first
event's start, then its open events (a few). The closed ones are read only when the
version moved (then only those with a newer transition), the window starts before those
kept, or the site row is not the one they were read for. The report itself
(`availability.report`) stays the one pure function of the rows; kept, they are a
`Timeline` it takes as they would be (tests/api/test_uptime_reads.py).

A site whose events have no transitions (rows written by hand, not by the sink) is
read in full every time. Bounded: at most `max_sites` sites and `max_spans` rows are
kept (least recently used first out), and an entry is read in full again after `ttl_s`
whatever its version says.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sitewatch.sink import tables as st

from . import models
from .availability import Incident, Span, Timeline, timeline
from .queries import AVAILABILITY_CHECK_TYPES, spans_of
from .timefmt import db_time, to_ms


@dataclass(slots=True)
class _Entry:
    created_ms: int | None  # the site row's created_at when read: a new row, a new entry
    version: int | None  # the site's largest transition id when read (None: none)
    after_ms: int  # holds the closed events that ended after this
    spans: list[Span]  # those events
    kept: Timeline  # and as the report takes them, classified once
    read_at: float  # monotonic seconds
    #: the answer's incident of each report incident met so far (most recur unchanged)
    answers: dict[Incident, models.Incident] = field(default_factory=dict)


class UptimeInputs(NamedTuple):
    """A site's report inputs: its closed events (also as a timeline), its open ones, and
    its first event's start."""

    closed: list[Span]
    kept: Timeline
    opened: list[Span]
    first_event_ms: int | None
    #: answers already built for report incidents (`routes_sites.uptime_answer`)
    answers: dict[Incident, models.Incident]

    @property
    def spans(self) -> list[Span]:
        return self.closed + self.opened


class UptimeReads:
    """A site's report inputs over a window, with its closed events kept (one per app)."""

    def __init__(
        self, *, max_sites: int = 256, max_spans: int = 500_000, ttl_s: float = 600.0
    ) -> None:
        self.max_sites, self.max_spans, self.ttl_s = max_sites, max_spans, ttl_s
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._spans = 0
        #: closed-event reads answered from memory, and those that went to the table
        self.hits = self.misses = 0
        #: reads of only the events changed since the kept version
        self.updates = 0

    async def inputs(
        self,
        conn: AsyncConnection,
        site_id: int,
        created_ms: int | None,
        start_ms: int,
        end_ms: int,
    ) -> UptimeInputs:
        """The site's availability events that may overlap [start, end) (a superset, as
        `availability.report` accepts), and the start of its first event ever."""
        old = self._entries.get(site_id)
        version, first = await _version_and_first(conn, site_id)
        entry = None
        if (
            old is not None
            and old.created_ms == created_ms
            and old.after_ms <= start_ms
            and time.monotonic() - old.read_at < self.ttl_s
        ):
            entry = await self._brought_up_to(conn, site_id, old, version)
        if entry is None:
            entry = await self._read(conn, site_id, created_ms, version, start_ms, old)
        opened = await self._open(conn, conn.dialect.name, site_id, end_ms)
        return UptimeInputs(entry.spans, entry.kept, opened, first, entry.answers)

    async def _brought_up_to(
        self, conn: AsyncConnection, site_id: int, entry: _Entry, version: int | None
    ) -> _Entry | None:
        """`entry` as of `version`, from the events with a newer transition (None: too
        many of those to read one by one, read everything)."""
        if entry.version == version:
            self.hits += 1
            self._entries.move_to_end(site_id)
            if len(entry.answers) > 2 * len(entry.kept.whole) + 1_000:  # many windows' edges
                entry.answers.clear()
            return entry
        if version is None or entry.version is None:
            return None
        changed = await _changed_since(conn, site_id, entry.version)
        if changed is None:
            return None
        self.updates += 1
        fresh = await self._closed(conn, conn.dialect.name, site_id, entry.after_ms, changed)
        kept = [s for s in entry.spans if s[0] not in changed]
        # an event opened or escalated leaves the closed ones as they were
        same = not fresh and len(kept) == len(entry.spans)
        spans = entry.spans if same else [*kept, *fresh]
        newer = _Entry(
            entry.created_ms,
            version,
            entry.after_ms,
            spans,
            entry.kept if same else timeline(spans),
            entry.read_at,  # the age that bounds what no version covers
            entry.answers,
        )
        self._keep(site_id, newer)
        return newer

    async def _read(
        self,
        conn: AsyncConnection,
        site_id: int,
        created_ms: int | None,
        version: int | None,
        start_ms: int,
        old: _Entry | None,
    ) -> _Entry:
        """All the site's closed events ending after the window starts (or after what
        was kept, if earlier); kept when they have a version."""
        self.misses += 1
        after = start_ms if old is None else min(start_ms, old.after_ms)
        spans = await self._closed(conn, conn.dialect.name, site_id, after)
        entry = _Entry(created_ms, version, after, spans, timeline(spans), time.monotonic())
        if version is not None:
            self._keep(site_id, entry)
        return entry

    def _keep(self, site_id: int, entry: _Entry) -> None:
        old = self._entries.pop(site_id, None)
        if old is not None:
            self._spans -= len(old.spans)
        if len(entry.spans) > self.max_spans:
            return
        self._entries[site_id] = entry
        self._spans += len(entry.spans)
        while len(self._entries) > self.max_sites or self._spans > self.max_spans:
            _, gone = self._entries.popitem(last=False)
            self._spans -= len(gone.spans)

    async def _closed(
        self,
        conn: AsyncConnection,
        dialect: str,
        site_id: int,
        after_ms: int,
        ids: Collection[str] | None = None,
    ) -> list[Span]:
        """The site's closed availability events ending after `after_ms` (of `ids`)."""
        stmt = spans_of(dialect).where(*_closed_after(site_id, after_ms))
        if ids is not None:
            stmt = stmt.where(st.events.c.id.in_(sorted(ids)))
        rows: Sequence[Any] = (await conn.execute(stmt)).all()
        return [tuple(r) for r in rows]

    async def _open(
        self, conn: AsyncConnection, dialect: str, site_id: int, end_ms: int
    ) -> list[Span]:
        e = st.events
        stmt = spans_of(dialect).where(
            e.c.site_id == site_id,
            e.c.ended_at.is_(None),
            e.c.started_at < db_time(end_ms),
            e.c.check_type.in_(AVAILABILITY_CHECK_TYPES),
        )
        return [tuple(r) for r in (await conn.execute(stmt)).all()]  # type: ignore[misc]


def _closed_after(site_id: int, after_ms: int) -> tuple[sa.ColumnElement[bool], ...]:
    e = st.events
    # `ended_at > t` holds for closed events only (NULL compares as unknown)
    return (
        e.c.site_id == site_id,
        e.c.ended_at > db_time(after_ms),
        e.c.check_type.in_(AVAILABILITY_CHECK_TYPES),
    )


#: past this many transitions since the kept version, all the events are read again
MAX_CHANGED: Final = 1_000


async def _changed_since(conn: AsyncConnection, site_id: int, version: int) -> set[str] | None:
    """The events with a transition after `version` (None: over MAX_CHANGED of those)."""
    t = st.transitions
    stmt = (
        sa.select(t.c.event_id)
        .where(t.c.site_id == site_id, t.c.id > version)
        .limit(MAX_CHANGED + 1)
    )
    rows = (await conn.execute(stmt)).all()
    return None if len(rows) > MAX_CHANGED else {row[0] for row in rows}


async def _version_and_first(conn: AsyncConnection, site_id: int) -> tuple[int | None, int | None]:
    """The site's largest transition id and its first event's start, in one round trip
    (each an index lookup: `ix_jetmon_event_transitions_site_id`, `..._site_started`)."""
    t, e = st.transitions, st.events
    row = (
        await conn.execute(
            sa.select(
                sa.select(sa.func.max(t.c.id)).where(t.c.site_id == site_id).scalar_subquery(),
                sa.select(sa.func.min(e.c.started_at))
                .where(e.c.site_id == site_id)
                .scalar_subquery(),
            )
        )
    ).one()
    version, first = row
    return (
        None if version is None else int(version),
        None if first is None else to_ms(first),
    )
