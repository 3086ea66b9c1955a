"""What the benchmarks of `sitewatch api` share (P9, P10): a scratch MariaDB database, bulk
event rows, the heavy site's 10,000 events, the real `sitewatch api` process, and timing.

Imported by the scripts beside it (`python bench/pN_*.py` puts bench/ on the path)."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pymysql

from sitewatch.devbroker import free_port
from sitewatch.migrations.command import upgrade

HEAVY_SITE = 424_242
HEAVY_EVENTS = 10_000
SITEWATCH = str(Path(sys.executable).with_name("sitewatch"))
BATCH = 10_000


def connect(db: str | None = None) -> pymysql.Connection:  # type: ignore[type-arg]
    return pymysql.connect(host="127.0.0.1", user="root", password="", database=db)


def heavy_events(rng: random.Random, start: datetime) -> list[tuple[Any, ...]]:
    """The heavy site: 10,000 events over 90 days from `start`, a few minutes each, some
    overlapping; a mix of confirmed outages, false alarms (severity 3) and TLS warnings."""
    rows = []
    step = 90 * 86_400 / HEAVY_EVENTS
    for k in range(HEAVY_EVENTS):
        began = start + timedelta(seconds=k * step + rng.random() * step)
        check, severity = rng.choice([("http", 4), ("tcp", 4), ("http", 3), ("tls_expiry", 1)])
        ended = began + timedelta(seconds=rng.randrange(30, 1200))
        rows.append((f"h{k}", HEAVY_SITE, check, "resolved", severity, began, ended))
    return rows


TRANSITION_SQL = (
    "INSERT INTO jetmon_event_transitions (transition_id, event_id, site_id, seq, reason,"
    " state_before, state_after, severity_before, severity_after, source, at, check_type,"
    " started_at, ended_at, kafka_topic, kafka_partition, kafka_offset)"
    " VALUES (%s, %s, %s, 1, 'resolved', 'down', 'resolved', %s, %s, 'local', %s, %s, %s, %s,"
    " 'site-events', 0, 0)"
)


def transition_of(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The closing transition of an event row (id, site, check, state, severity, start, end)."""
    eid, site, check, _, severity, began, ended = row
    return (f"t-{eid}", eid, site, severity, severity, ended or began, check, began, ended)


def insert_events(conn: pymysql.Connection, rows: Sequence[tuple[Any, ...]]) -> None:  # type: ignore[type-arg]
    """Rows of (id, site_id, check_type, state, severity, started_at, ended_at), then the
    statistics the planner needs. The heavy site's events get the transition row the
    sink writes with each event (the version the API's uptime reads go by)."""
    cur = conn.cursor()
    for i in range(0, len(rows), BATCH):
        cur.executemany(
            "INSERT INTO jetmon_events (id, site_id, check_type, state, severity, started_at,"
            " ended_at, resolution_reason) VALUES (%s, %s, %s, %s, %s, %s, %s, 'x')",
            rows[i : i + BATCH],
        )
        conn.commit()
    heavy = [r for r in rows if r[1] == HEAVY_SITE]
    for i in range(0, len(heavy), BATCH):
        cur.executemany(TRANSITION_SQL, [transition_of(r) for r in heavy[i : i + BATCH]])
        conn.commit()
    cur.execute("ANALYZE TABLE jetmon_events, jetpack_monitor_sites")
    cur.fetchall()
    conn.commit()


@asynccontextmanager
async def scratch_database() -> AsyncIterator[tuple[str, str]]:
    """A new, migrated database: its name and SQLAlchemy URL; dropped afterwards."""
    db = f"sw_bench_{uuid.uuid4().hex[:8]}"
    admin = connect()
    admin.cursor().execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    try:
        url = f"mysql+asyncmy://root@127.0.0.1:3306/{db}"
        await upgrade(url)
        yield db, url
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()


def api_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SITEWATCH_DATABASE_URL": url,
        "SITEWATCH_API_LISTEN": f"127.0.0.1:{free_port()}",
        # reads need no broker; the publisher keeps retrying in the background
        "SITEWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "SITEWATCH_LOG_LEVEL": "WARNING",
        "SITEWATCH_LOG_FORMAT": "json",
    }


@asynccontextmanager
async def running_api(env: dict[str, str]) -> AsyncIterator[str]:
    """The real `sitewatch api` process; yields its base URL once it answers."""
    proc = await asyncio.create_subprocess_exec(
        SITEWATCH,
        "api",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://{env['SITEWATCH_API_LISTEN']}"
    try:
        async with aiohttp.ClientSession(base) as http:
            for _ in range(100):
                try:
                    async with http.get("/api/v1/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        await proc.wait()


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(name: str, samples: list[float]) -> str:
    return (
        f"{name:<44} p50 {pct(samples, 50):7.2f} ms   p99 {pct(samples, 99):7.2f} ms"
        f"   mean {statistics.fmean(samples):7.2f} ms   n={len(samples)}"
    )


async def timed(n: int, call: Callable[[], Awaitable[object]], warm_up: int = 20) -> list[float]:
    for _ in range(min(warm_up, n)):  # pools, caches, the buffer pool
        await call()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())
