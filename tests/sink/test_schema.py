"""Migrations create the schema of record; the database guards closed events itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pymysql
import pytest
import sqlalchemy as sa

from sitewatch.migrations.command import downgrade, upgrade
from sitewatch.sink.db import make_engine

from .conftest import drop_mysql_db, new_mysql_db

pytestmark = pytest.mark.integration

TABLES = {
    "jetpack_monitor_sites",
    "jetmon_events",
    "jetmon_event_transitions",
    "sitewatch_offsets",
}

NOTIFY_TABLES = {
    "sitewatch_webhook_subscriptions",
    "sitewatch_notify_alerts",
    "sitewatch_webhook_deliveries",
}

API_TABLES = {"sitewatch_api_keys", "sitewatch_api_audit"}

SITE = "INSERT INTO jetpack_monitor_sites (site_id, url) VALUES (1, 'https://a.example')"
OPEN = (
    "INSERT INTO jetmon_events (id, site_id, check_type, discriminator, state, severity,"
    " started_at) VALUES ('{id}', 1, 'http', '', 'seems_down', 3, '2026-11-26 10:00:00.000')"
)


def _show_create(db: str, table: str) -> str:
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=db)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SHOW CREATE TABLE {table}")
            return str(cur.fetchone()[1])
    finally:
        conn.close()


def test_sitewatch_migrate_on_empty_mariadb_creates_exactly_the_tables() -> None:
    name, url = new_mysql_db()
    try:
        env = {"SITEWATCH_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
        subprocess.run([".venv/bin/sitewatch", "migrate"], check=True, env=env, timeout=60)
        conn = pymysql.connect(host="127.0.0.1", user="root", password="", database=name)
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            # + the notifier's tables (migration 0002) and the API's (0004)
            assert {r[0] for r in cur.fetchall()} == (
                TABLES | NOTIFY_TABLES | API_TABLES | {"alembic_version"}
            )
        conn.close()
        events = _show_create(name, "jetmon_events")
        assert "FOREIGN KEY (`site_id`) REFERENCES `jetpack_monitor_sites` (`site_id`)" in events
        assert "ON DELETE CASCADE" in events
        assert "UNIQUE KEY `uq_jetmon_events_open_key` (`open_key`)" in events
        assert "GENERATED ALWAYS AS (case when `ended_at` is null then" in events
        assert "`started_at` datetime(3) NOT NULL" in events
        for table in TABLES:
            create = _show_create(name, table)
            assert "ON UPDATE" not in create.upper(), table
        transitions = _show_create(name, "jetmon_event_transitions")
        assert "UNIQUE KEY `uq_jetmon_event_transitions_transition_id`" in transitions
        subprocess.run(
            [".venv/bin/sitewatch", "migrate", "--downgrade", "base"],
            check=True,
            env=env,
            timeout=60,
        )
        conn = pymysql.connect(host="127.0.0.1", user="root", password="", database=name)
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            assert {r[0] for r in cur.fetchall()} == {"alembic_version"}
        conn.close()
    finally:
        drop_mysql_db(name)


async def _trigger_and_keys(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(SITE))
            await conn.execute(sa.text(OPEN.format(id="e1")))
        # a second open event for the same tuple is refused by the open-event key
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(sa.text(OPEN.format(id="e2")))
        async with engine.begin() as conn:  # an open row may change (it closes here)
            await conn.execute(
                sa.text(
                    "UPDATE jetmon_events SET state='resolved', ended_at='2026-11-26 10:05:00',"
                    " resolution_reason='probe_cleared' WHERE id='e1'"
                )
            )
            # once closed, the tuple may open again at once (invariant 8)
            await conn.execute(sa.text(OPEN.format(id="e2")))
        for change in (
            "UPDATE jetmon_events SET state='down' WHERE id='e1'",
            "UPDATE jetmon_events SET ended_at=NULL WHERE id='e1'",
            "UPDATE jetmon_events SET metadata='{}' WHERE id='e1'",
        ):
            with pytest.raises(sa.exc.DBAPIError, match="closed event row is immutable"):
                async with engine.begin() as conn:
                    await conn.execute(sa.text(change))
        async with engine.connect() as conn:
            row = (
                await conn.execute(sa.text("SELECT state FROM jetmon_events WHERE id='e1'"))
            ).one()
            assert row.state == "resolved"
        # deleting the site cascades to its events
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM jetpack_monitor_sites WHERE site_id=1"))
        async with engine.connect() as conn:
            left = (await conn.execute(sa.text("SELECT COUNT(*) FROM jetmon_events"))).scalar()
            assert left == 0
    finally:
        await engine.dispose()


async def test_invariant_7_closed_events_never_changed(db_url: str) -> None:
    """MariaDB: raw SQL UPDATEs of a closed event row fail (trigger)."""
    await _trigger_and_keys(db_url)


async def test_invariant_7_closed_events_never_changed_sqlite(sqlite_url: str) -> None:
    await _trigger_and_keys(sqlite_url)


async def test_sqlite_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    await upgrade(url)
    await downgrade(url, "base")
    await upgrade(url)
    engine = make_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    await engine.dispose()
    assert names == TABLES | NOTIFY_TABLES | API_TABLES | {"alembic_version"}


def test_sink_refuses_to_start_without_the_schema() -> None:
    name, url = new_mysql_db()
    try:
        env = {"SITEWATCH_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [".venv/bin/sitewatch", "sink"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and "run `sitewatch migrate` first" in done.stderr
    finally:
        drop_mysql_db(name)


async def test_core_tables_match_the_migrated_schema(db_url: str) -> None:
    """sink/tables.py (what the code writes) and migration 0001 (the schema) agree."""
    from sitewatch.sink import tables as t

    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            migrated = await conn.run_sync(
                lambda c: {
                    name: [col["name"] for col in sa.inspect(c).get_columns(name)]
                    for name in TABLES
                }
            )
            indexes = await conn.run_sync(
                lambda c: {
                    name: {i["name"] for i in sa.inspect(c).get_indexes(name)} for name in TABLES
                }
            )
    finally:
        await engine.dispose()
    assert migrated == {table.name: [c.name for c in table.c] for table in t.ALL_TABLES}
    declared = {
        table.name: {i.name for i in table.indexes}
        | {c.name for c in table.constraints if isinstance(c, sa.UniqueConstraint)}
        for table in t.ALL_TABLES
    }
    # MariaDB lists unique constraints among indexes, and the FK's own index if any
    assert {k: v - {"fk_jetmon_events_site"} for k, v in indexes.items()} == declared
