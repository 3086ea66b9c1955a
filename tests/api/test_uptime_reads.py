"""The uptime report's reads keep each site's closed events between requests: whatever
happens to the table through the sink's kinds of change (events opened, escalated,
closed, inserted closed, each with its transition row; a site deleted with its events
and created again), the report from the kept rows equals the report from a fresh read
(MariaDB and SQLite)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sitewatch.api import availability
from sitewatch.api.timefmt import to_ms
from sitewatch.api.uptime import UptimeReads
from sitewatch.migrations.command import upgrade
from sitewatch.sink import tables as st
from sitewatch.sink.db import make_engine

from .live import drop_database, event_row, new_database, site_row

pytestmark = pytest.mark.integration

T0 = datetime(2026, 9, 1)
DAY_MS = 86_400_000


@pytest.fixture(params=["mariadb", "sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'uptime.db'}", None
    else:
        name, url = new_database()
    await upgrade(url)
    eng = make_engine(url)
    try:
        yield eng
    finally:
        await eng.dispose()
        if name is not None:
            drop_database(name)


_seq = iter(range(1, 10**9))


async def note(conn: AsyncConnection, site_id: int, event_id: str) -> None:
    """The transition row the sink writes with every change to an event."""
    seq = next(_seq)
    now = datetime(2026, 12, 1)
    await conn.execute(
        sa.insert(st.transitions).values(
            transition_id=f"t{seq}",
            event_id=event_id,
            site_id=site_id,
            seq=seq,
            reason="opened",
            state_before="up",
            state_after="down",
            severity_before=0,
            source="local",
            at=now,
            check_type="http",
            started_at=now,
            kafka_topic="site-events",
            kafka_partition=0,
            kafka_offset=seq,
        )
    )


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def reports(
    engine: AsyncEngine, kept: UptimeReads, site_id: int, start_ms: int, end_ms: int
) -> tuple[availability.Report, availability.Report]:
    """The report from `kept` and from a fresh read, in one snapshot each."""
    out = []
    for reads in (kept, UptimeReads()):
        async with engine.connect() as conn:
            row = (
                await conn.execute(sa.select(st.sites).where(st.sites.c.site_id == site_id))
            ).one()
            created = None if row.created_at is None else to_ms(row.created_at)
            got = await reads.inputs(conn, site_id, created, start_ms, end_ms)
        first = got.first_event_ms
        out.append(
            availability.report(
                got.opened,
                [],
                start_ms,
                end_ms,
                site_created_ms=created,
                first_event_ms=first,
                kept=got.kept,
            )
        )
        # the kept timeline and the rows it was made from give the same report
        assert out[-1] == availability.report(
            got.spans, [], start_ms, end_ms, site_created_ms=created, first_event_ms=first
        )
    return out[0], out[1]


async def test_kept_closed_events_give_the_report_a_fresh_read_gives(
    engine: AsyncEngine,
) -> None:
    rng = random.Random(15)
    kept = UptimeReads()
    async with engine.begin() as conn:
        await conn.execute(sa.insert(st.sites), [site_row(1, created_at=T0)])
    opened: list[str] = []
    start_ms, end_ms = to_ms(T0), to_ms(T0 + timedelta(days=30))
    for step in range(60):
        action = rng.choice(["open", "closed", "close", "escalate", "read", "earlier"])
        at = T0 + timedelta(minutes=rng.randrange(30 * 24 * 60))
        async with engine.begin() as conn:
            if action == "open":
                eid = f"o{step}"
                severity = rng.choice([3, 4])
                await conn.execute(
                    sa.insert(st.events),
                    [event_row(eid, 1, stamp(at), severity=severity, discriminator=eid)],
                )
                opened.append(eid)
                await note(conn, 1, eid)
            elif action == "closed":  # opened and closed within one sink batch
                ended = at + timedelta(minutes=rng.randrange(1, 90))
                check = rng.choice(["http", "tcp", "tls_expiry"])
                await conn.execute(
                    sa.insert(st.events),
                    [
                        event_row(
                            f"c{step}",
                            1,
                            stamp(at),
                            stamp(ended),
                            check_type=check,
                            severity=rng.choice([3, 4]),
                        )
                    ],
                )
                await note(conn, 1, f"c{step}")
            elif action == "close" and opened:
                eid = opened.pop(rng.randrange(len(opened)))
                e = st.events
                began = (await conn.execute(sa.select(e.c.started_at).where(e.c.id == eid))).one()
                ended = began[0] + timedelta(minutes=rng.randrange(1, 600))
                await conn.execute(
                    sa.update(e)
                    .where(e.c.id == eid)
                    .values(ended_at=ended, state="resolved", resolution_reason="verifier_cleared")
                )
                await note(conn, 1, eid)
            elif action == "escalate" and opened:
                e = st.events
                eid = rng.choice(opened)
                await conn.execute(
                    sa.update(e).where(e.c.id == eid).values(severity=4, state="down")
                )
                await note(conn, 1, eid)
        if action == "earlier":  # a window starting before what is kept
            start_ms -= DAY_MS
        got, want = await reports(engine, kept, 1, start_ms, end_ms)
        assert got == want, (step, action)
    assert kept.hits > 0 and kept.misses > 0


async def test_kept_rows_of_a_deleted_site_are_not_those_of_its_successor(
    engine: AsyncEngine,
) -> None:
    kept = UptimeReads()
    start_ms, end_ms = to_ms(T0), to_ms(T0 + timedelta(days=10))
    day = timedelta(days=1)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(st.sites), [site_row(7, created_at=T0)])
        await conn.execute(
            sa.insert(st.events), [event_row("a", 7, stamp(T0 + day), stamp(T0 + 2 * day))]
        )
        await note(conn, 7, "a")
    first, _ = await reports(engine, kept, 7, start_ms, end_ms)
    assert first.down_ms == DAY_MS
    # deleted (its events go with it) and created again with as many closed events
    async with engine.begin() as conn:
        await conn.execute(sa.delete(st.events).where(st.events.c.site_id == 7))
        await conn.execute(sa.delete(st.sites).where(st.sites.c.site_id == 7))
        await conn.execute(sa.insert(st.sites), [site_row(7, created_at=T0 + day)])
        await conn.execute(
            sa.insert(st.events),
            [event_row("b", 7, stamp(T0 + 3 * day), stamp(T0 + 3 * day + timedelta(hours=1)))],
        )
        await note(conn, 7, "b")
    got, want = await reports(engine, kept, 7, start_ms, end_ms)
    assert got == want
    assert got.down_ms == 3_600_000


async def test_events_written_without_transitions_are_read_in_full_each_time(
    engine: AsyncEngine,
) -> None:
    """Rows not written by the sink have no version: nothing of them is kept."""
    kept = UptimeReads()
    start_ms, end_ms = to_ms(T0), to_ms(T0 + timedelta(days=10))
    hour = timedelta(hours=1)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(st.sites), [site_row(8, created_at=T0)])
        await conn.execute(sa.insert(st.events), [event_row("x", 8, stamp(T0), stamp(T0 + hour))])
    first, _ = await reports(engine, kept, 8, start_ms, end_ms)
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(st.events), [event_row("y", 8, stamp(T0 + 2 * hour), stamp(T0 + 3 * hour))]
        )
    got, want = await reports(engine, kept, 8, start_ms, end_ms)
    assert (first.down_ms, got.down_ms) == (3_600_000, 7_200_000)
    assert got == want and kept.hits == 0
