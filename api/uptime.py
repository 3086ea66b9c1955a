"""The uptime report's reads, with each site's closed events kept between requests.

A closed event row never changes (invariant 7: a trigger refuses the update), and every
change the sink makes to a site's events comes with a new row of `jetmon_event_transitions`
in the same transaction (its `id` ascends; one sink writes a site at a time). So the
site's largest transition `id` is a version of its events: while it stays, so do they.
A request reads, index-only and in O(log n), that version, the site's open events (a few)
and its first event's start; its closed events only when the version moved, the window
starts before those kept, or the site row is not the one they were read for. The report
itself (`availability.report`) stays the one pure function of the rows, and gets the
rows a full read would give it (tests/api/test_uptime_reads.py).

A site whose events have no transitions (rows written by hand, not by the sink) is
read in full every time. Bounded: at most `max_sites` sites and `max_spans` rows are
kept (least recently used first out), and an entry is read again after `ttl_s` whatever
its version says.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sitewatch.sink import tables as st

from .availability import AVAILABILITY_CHECKS, Span, Timeline, timeline
from .queries import epoch_ms
from .timefmt import db_time, to_ms

_CHECKS: Final = sorted(c.value for c in AVAILABILITY_CHECKS)
_INDEX: Final = "FORCE INDEX (ix_jetmon_events_site_uptime)"


@dataclass(slots=True)
class _Entry:
    created_ms: int | None  # the site row's created_at when read: a new row, a new entry
    version: int  # the site's largest transition id when read
    after_ms: int  # holds the closed events that ended after this
    spans: list[Span]  # those events, by (started, id)
    kept: Timeline  # and as the report takes them, classified once
    read_at: float  # monotonic seconds


class UptimeInputs(NamedTuple):
    """A site's report inputs: its closed events (also as a timeline), its open ones, and
    its first event's start."""

    closed: list[Span]
    kept: Timeline
    opened: list[Span]
    first_event_ms: int | None

    @property
    def spans(self) -> list[Span]:
        return self.closed + self.opened


class UptimeReads:
    """A site's report inputs over a window, with its closed events kept (one per app)."""

    def __init__(
        self, *, max_sites: int = 256, max_spans: int = 2_000_000, ttl_s: float = 600.0
    ) -> None:
        self.max_sites, self.max_spans, self.ttl_s = max_sites, max_spans, ttl_s
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._spans = 0
        #: closed-event reads answered from memory, and those that went to the table
        self.hits = self.misses = 0

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
        dialect = conn.dialect.name
        entry = self._entries.get(site_id)
        version = await _version(conn, site_id)
        if (
            entry is not None
            and entry.version == version
            and entry.created_ms == created_ms
            and entry.after_ms <= start_ms
            and time.monotonic() - entry.read_at < self.ttl_s
        ):
            self.hits += 1
            self._entries.move_to_end(site_id)
            closed, kept = entry.spans, entry.kept
        else:
            self.misses += 1
            after = start_ms if entry is None else min(start_ms, entry.after_ms)
            closed = await self._closed(conn, dialect, site_id, after)
            kept = timeline(closed)
            if version is not None:
                entry = _Entry(created_ms, version, after, closed, kept, time.monotonic())
                self._keep(site_id, entry)
        opened = await self._open(conn, dialect, site_id, end_ms)
        return UptimeInputs(closed, kept, opened, await _first_event_ms(conn, site_id))

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
        self, conn: AsyncConnection, dialect: str, site_id: int, after_ms: int
    ) -> list[Span]:
        stmt = _spans(dialect).where(*_closed_after(site_id, after_ms))
        rows: Sequence[Any] = (await conn.execute(stmt)).all()
        # by start (then id): the report's own sort of its incidents is then a single pass
        return sorted((tuple(r) for r in rows), key=_by_start)

    async def _open(
        self, conn: AsyncConnection, dialect: str, site_id: int, end_ms: int
    ) -> list[Span]:
        e = st.events
        stmt = _spans(dialect).where(
            e.c.site_id == site_id,
            e.c.ended_at.is_(None),
            e.c.started_at < db_time(end_ms),
            e.c.check_type.in_(_CHECKS),
        )
        return [tuple(r) for r in (await conn.execute(stmt)).all()]  # type: ignore[misc]


def _spans(dialect: str) -> sa.Select[Any]:
    """The report's columns (event id, check type, severity, started ms, ended ms), read
    from `ix_jetmon_events_site_uptime` alone (MariaDB is told to use it)."""
    e = st.events
    return sa.select(
        e.c.id,
        e.c.check_type,
        e.c.severity,
        epoch_ms(e.c.started_at, dialect),
        epoch_ms(e.c.ended_at, dialect),
    ).with_hint(e, _INDEX, "mysql")


def _closed_after(site_id: int, after_ms: int) -> tuple[sa.ColumnElement[bool], ...]:
    e = st.events
    # `ended_at > t` holds for closed events only (NULL compares as unknown)
    return (e.c.site_id == site_id, e.c.ended_at > db_time(after_ms), e.c.check_type.in_(_CHECKS))


def _by_start(span: Span) -> tuple[int, str]:
    return span[3], span[0]


async def _version(conn: AsyncConnection, site_id: int) -> int | None:
    """The site's largest transition id (`ix_jetmon_event_transitions_site_id`)."""
    t = st.transitions
    found = (
        await conn.execute(sa.select(sa.func.max(t.c.id)).where(t.c.site_id == site_id))
    ).scalar()
    return None if found is None else int(found)


async def _first_event_ms(conn: AsyncConnection, site_id: int) -> int | None:
    e = st.events
    first = (
        await conn.execute(sa.select(sa.func.min(e.c.started_at)).where(e.c.site_id == site_id))
    ).scalar()
    return None if first is None else to_ms(first)
