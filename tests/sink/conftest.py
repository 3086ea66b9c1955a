"""Fixtures of the sink tests: a fresh, migrated database per test (MariaDB or SQLite)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch.migrations.command import upgrade
from sitewatch.sink import tables as t
from sitewatch.sink.db import make_engine

MYSQL = "mysql+asyncmy://root@127.0.0.1:3306"


def _admin(sql: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def new_mysql_db() -> tuple[str, str]:
    name = f"sw_sink_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    return name, f"{MYSQL}/{name}"


def drop_mysql_db(name: str) -> None:
    _admin(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
async def db_url() -> AsyncIterator[str]:
    """A migrated database of its own on the machine's MariaDB."""
    name, url = new_mysql_db()
    try:
        await upgrade(url)
        yield url
    finally:
        drop_mysql_db(name)


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sink.db'}"
    await upgrade(url)
    return url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


async def snapshot(engine: AsyncEngine, *, volatile: bool = True) -> dict[str, list[Any]]:
    """Every row of the sink's tables, in key order.

    With `volatile=False` the columns that differ between equivalent runs are left
    out: events' created_at (insert time) and transitions' autoincrement id (InnoDB
    may skip values after a rolled-back insert).
    """
    out: dict[str, list[Any]] = {}
    order = {
        "jetpack_monitor_sites": "site_id",
        "jetmon_events": "id",
        "jetmon_event_transitions": "transition_id",
        "sitewatch_offsets": "consumer_group, topic, kafka_partition",
    }
    skip = (
        set() if volatile else {("jetmon_events", "created_at"), ("jetmon_event_transitions", "id")}
    )
    async with engine.connect() as conn:
        for table in t.ALL_TABLES:
            cols = [c.name for c in table.c if (table.name, c.name) not in skip]
            rows = await conn.execute(
                sa.text(f"SELECT {', '.join(cols)} FROM {table.name} ORDER BY {order[table.name]}")
            )
            out[table.name] = [tuple(r) for r in rows]
    return out
