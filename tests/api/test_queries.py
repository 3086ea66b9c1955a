"""The API's row -> answer and keyset-page helpers, in process on SQLite (the routes that
use them are tested live in test_routes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from msgspec import UNSET

from sitewatch.api import cursor, models, queries
from sitewatch.api.timefmt import to_ms
from sitewatch.sink.db import make_engine
from sitewatch.streams.enums import EventState

metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(10)),
    sa.Column("at", sa.DateTime),
)
T0 = datetime(2026, 11, 26, 10, 0, 0)


class Thing(msgspec.Struct, kw_only=True):
    id: int
    name: str
    at: str
    shout: str


def thing_of(m: sa.RowMapping) -> Thing:
    return queries.answer_of(Thing, m, shout=m["name"].upper())


@pytest.fixture
async def conn() -> AsyncIterator[Any]:
    engine = make_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as c:
        await c.run_sync(metadata.create_all)
        # two rows share a time: the id breaks the tie
        stamps = [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=1), T0 + timedelta(2)]
        await c.execute(
            sa.insert(things),
            [{"id": i + 1, "name": f"n{i + 1}", "at": at} for i, at in enumerate(stamps)],
        )
        yield c
    await engine.dispose()


def test_answer_of_takes_each_field_from_its_column_times_in_wire_format() -> None:
    row = {"id": 3, "name": "x", "at": datetime(2026, 11, 26, 10, 0, 0, 123000), "extra": 1}
    assert thing_of(row) == Thing(id=3, name="x", at="2026-11-26T10:00:00.123Z", shout="X")


def by_id(m: sa.RowMapping) -> tuple[Any, ...]:
    return (m["id"],)


def by_time(m: sa.RowMapping) -> tuple[Any, ...]:
    return to_ms(m["at"]), m["name"]


async def pages(conn: Any, newest: bool) -> list[list[int]]:
    """The ids of every page, following the cursors to the end."""
    out: list[list[int]] = []
    raw: Any = UNSET
    while True:
        q = models.PageQuery(limit=2, cursor=raw)
        if newest:
            listed, position = cursor.List.EVENTS, by_time
            stmt = queries.newest_first(sa.select(things), things.c.at, things.c.name, listed, q)
        else:
            listed, position = cursor.List.SITES, by_id
            stmt = queries.ascending(sa.select(things), things.c.id, listed, q)
        data, raw = await queries.read_page(conn, stmt, q, thing_of, listed, position)
        out.append([t.id for t in data])
        if raw is None:
            return out


async def test_ascending_pages_walk_every_row_once(conn: Any) -> None:
    assert await pages(conn, newest=False) == [[1, 2], [3, 4]]


async def test_newest_first_pages_walk_every_row_once_ties_by_key(conn: Any) -> None:
    assert await pages(conn, newest=True) == [[4, 3], [2, 1]]


def test_event_state_filter_is_open_closed_and_every_state_an_event_is_stored_with() -> None:
    # the filter repeats EventState's values (a query parameter's own closed set): keep them equal
    states = {s.value for s in EventState} - {EventState.UP.value}
    assert {f.value for f in models.EventStateFilter} == {"open", "closed"} | states
