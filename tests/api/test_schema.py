"""Migration 0004 on MariaDB and SQLite: the API's tables as api/tables.py declares
them, `created_at` of a site row set by the database, and a clean downgrade."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sitewatch.api import tables as at
from sitewatch.migrations.command import downgrade, upgrade
from sitewatch.sink import tables as st
from sitewatch.sink.db import make_engine

from .live import drop_database, new_database

pytestmark = pytest.mark.integration


@pytest.fixture(params=["mariadb", "sqlite"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"
        return
    name, mysql = new_database()
    try:
        yield mysql
    finally:
        drop_database(name)


async def test_api_tables_match_the_migration_and_downgrade_cleanly(url: str) -> None:
    await upgrade(url)
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {
                    tb.name: [col["name"] for col in sa.inspect(c).get_columns(tb.name)]
                    for tb in at.ALL_TABLES
                }
            )
            indexes = await conn.run_sync(
                lambda c: {i["name"] for i in sa.inspect(c).get_indexes("jetmon_events")}
            )
        assert columns == {tb.name: [c.name for c in tb.c] for tb in at.ALL_TABLES}
        assert {
            "ix_jetmon_events_open_started",
            "ix_jetmon_events_started",
            "ix_jetmon_events_site_uptime",
        } <= indexes
        await downgrade(url, "0003")
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            site_cols = await conn.run_sync(
                lambda c: {
                    col["name"] for col in sa.inspect(c).get_columns("jetpack_monitor_sites")
                }
            )
        assert not names & {tb.name for tb in at.ALL_TABLES}
        assert "created_at" not in site_cols
        await upgrade(url)
    finally:
        await engine.dispose()


async def test_site_row_gets_created_at_from_the_database_also_for_rows_before_0004(
    url: str,
) -> None:
    await upgrade(url, "0003")
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("INSERT INTO jetpack_monitor_sites (site_id, url) VALUES (1, 'a')")
            )
        await upgrade(url)
        async with engine.begin() as conn:
            # as the sink writes a row: the settings columns only
            await conn.execute(sa.insert(st.sites).values(site_id=2, url="b"))
            rows = (
                await conn.execute(
                    sa.select(st.sites.c.site_id, st.sites.c.created_at).order_by(
                        st.sites.c.site_id
                    )
                )
            ).all()
        assert [r[0] for r in rows] == [1, 2]
        assert all(r[1] is not None for r in rows), rows
        # an upsert of settings leaves it alone
        async with engine.begin() as conn:
            await conn.execute(sa.update(st.sites).where(st.sites.c.site_id == 2).values(url="c"))
            again = (
                await conn.execute(sa.select(st.sites.c.created_at).where(st.sites.c.site_id == 2))
            ).scalar()
        assert again == rows[1][1]
    finally:
        await engine.dispose()


async def test_uptime_read_computes_epoch_milliseconds_exactly_in_the_database(url: str) -> None:
    from datetime import datetime

    from sitewatch.api.timefmt import to_ms
    from sitewatch.api.uptime import UptimeReads

    await upgrade(url)
    stamps = [
        datetime(2026, 11, 26, 10, 0, 0, 0),
        datetime(2026, 11, 26, 10, 0, 0, 1000),
        datetime(2026, 11, 26, 23, 59, 59, 999000),
        datetime(1999, 12, 31, 23, 59, 59, 500000),
    ]
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(st.sites).values(site_id=1, url="a"))
            for i, at in enumerate(stamps):
                await conn.execute(
                    sa.insert(st.events).values(
                        id=f"e{i}",
                        site_id=1,
                        check_type="http",
                        state="resolved",
                        severity=4,
                        started_at=at,
                        ended_at=at,
                    )
                )
        async with engine.connect() as conn:
            got = await UptimeReads().inputs(conn, 1, None, 0, 2**42)
            rows, first = got.spans, got.first_event_ms
    finally:
        await engine.dispose()
    assert sorted((r[3], r[4]) for r in rows) == sorted((to_ms(t), to_ms(t)) for t in stamps)
    assert first == to_ms(min(stamps))
