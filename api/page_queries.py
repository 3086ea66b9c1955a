"""The status page's reads: a page of active sites worst first, the open incidents, and
the availability events of all the page's sites in one query (the 90 bars' input).

The site and event pages reuse `queries` as the JSON API does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sitewatch.sink import tables as st
from sitewatch.streams.enums import SiteState

from .availability import Span
from .queries import spans_select
from .timefmt import to_ms

STATUS_COLUMNS = (
    st.sites.c.site_id,
    st.sites.c.url,
    st.sites.c.current_state,
    st.sites.c.current_severity,
    st.sites.c.active_event_id,
    st.sites.c.last_status_change,
    st.sites.c.maintenance,
    st.sites.c.created_at,
)


async def status_sites(
    conn: AsyncConnection, limit: int, after: tuple[int, int] | None
) -> tuple[Sequence[Any], bool]:
    """Active sites, worst severity first, then by id; keyset `after` (severity, site_id).
    Answers the page and whether another follows."""
    s = st.sites
    stmt = (
        sa.select(*STATUS_COLUMNS)
        .where(s.c.active.is_(sa.true()))
        .order_by(s.c.current_severity.desc(), s.c.site_id)
        .limit(limit + 1)
    )
    if after is not None:
        severity, site_id = after
        stmt = stmt.where(
            sa.or_(
                s.c.current_severity < severity,
                sa.and_(s.c.current_severity == severity, s.c.site_id > site_id),
            )
        )
    rows = (await conn.execute(stmt)).all()
    return rows[:limit], len(rows) > limit


async def state_counts(conn: AsyncConnection) -> dict[str, int]:
    """Active sites by projected state."""
    s = st.sites
    stmt = (
        sa.select(s.c.current_state, sa.func.count())
        .where(s.c.active.is_(sa.true()))
        .group_by(s.c.current_state)
    )
    return {str(state): int(n) for state, n in (await conn.execute(stmt)).all()}


async def up_maintenance(conn: AsyncConnection) -> list[Any]:
    """The stored maintenance windows of the active sites projected up that have any: the
    page counts those inside one now as in maintenance (the projection never says so)."""
    s = st.sites
    stmt = sa.select(s.c.maintenance).where(
        s.c.active.is_(sa.true()),
        s.c.current_state == SiteState.UP.value,
        s.c.maintenance.is_not(None),
    )
    return [value for (value,) in (await conn.execute(stmt)).all() if value]


async def open_incidents(conn: AsyncConnection, limit: int) -> tuple[Sequence[Any], int]:
    """Open events of active sites, worst first then newest, at most `limit`, and how many
    there are in all."""
    e, s = st.events, st.sites
    joined = e.join(s, s.c.site_id == e.c.site_id)
    where = (e.c.ended_at.is_(None), s.c.active.is_(sa.true()))
    stmt = (
        sa.select(
            e.c.id,
            e.c.site_id,
            s.c.url,
            e.c.check_type,
            e.c.state,
            e.c.severity,
            e.c.started_at,
        )
        .select_from(joined)
        .where(*where)
        .order_by(e.c.severity.desc(), e.c.started_at.desc(), e.c.id)
        .limit(limit)
    )
    rows = (await conn.execute(stmt)).all()
    total = len(rows)
    if total == limit:
        count = sa.select(sa.func.count()).select_from(joined).where(*where)
        total = int((await conn.execute(count)).scalar_one())
    return rows, total


async def window_spans(
    conn: AsyncConnection, site_ids: Sequence[int], start_ms: int, end_ms: int
) -> dict[int, list[Span]]:
    """Every availability event of these sites overlapping [start, end), as the report's
    spans, by site: one query for the whole page, read from the report's own index."""
    out: dict[int, list[Span]] = {site: [] for site in site_ids}
    if not site_ids:
        return out
    sites = st.events.c.site_id.in_(site_ids)
    stmt = spans_select(conn.dialect.name, sites, start_ms, end_ms, by_site=True)
    for site_id, *span in (await conn.execute(stmt)).all():
        out[int(site_id)].append(tuple(span))  # type: ignore[arg-type]
    return out


async def first_events(conn: AsyncConnection, site_ids: Sequence[int]) -> dict[int, int]:
    """The `started_at` of each site's first event ever (ms), for those that have one."""
    if not site_ids:
        return {}
    e = st.events
    stmt = (
        sa.select(e.c.site_id, sa.func.min(e.c.started_at))
        .where(e.c.site_id.in_(site_ids))
        .group_by(e.c.site_id)
    )
    return {int(site): to_ms(first) for site, first in (await conn.execute(stmt)).all()}
