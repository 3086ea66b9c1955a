"""P9: API read latency on MariaDB (target: p99 <= 50 ms each).

Run from the repository root: `.venv/bin/python bench/p9_api.py [--requests N]`.
Creates a scratch database on 127.0.0.1:3306 (migrated, so with the indexes of migration
0004), fills it with 100,000 sites (two closed events each, an open one for a fifth of
them) and one site with 10,000 events over 90 days, starts the real `sitewatch api`
process with a read key, and measures, one request at a time over a keep-alive connection:

- `GET /api/v1/sites/{id}/uptime` over those 90 days (the whole report: key check, reads,
  the pure `sitewatch-1` function, JSON);
- `GET /api/v1/events?state=open` (first page, 50 newest open events of 100,000 sites),
  and a page deep in the list through its cursor;

beside a baseline measured in the same run: the bare SQL of each read through the same
driver (asyncmy), no HTTP, no Python beyond fetching the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pymysql
import sqlalchemy as sa

from sitewatch.devbroker import free_port
from sitewatch.migrations.command import upgrade
from sitewatch.sink.db import make_engine

SITES = 100_000
HEAVY_SITE = 424_242
HEAVY_EVENTS = 10_000
END = datetime(2026, 12, 1)
START = END - timedelta(days=90)
SITEWATCH = str(Path(sys.executable).with_name("sitewatch"))


def connect(db: str | None = None) -> pymysql.Connection:  # type: ignore[type-arg]
    return pymysql.connect(host="127.0.0.1", user="root", password="", database=db)


def fill(db: str, rng: random.Random) -> None:
    conn = connect(db)
    cur = conn.cursor()
    sites = [(i, f"https://s{i}.example") for i in range(1, SITES + 1)]
    sites.append((HEAVY_SITE, "https://heavy.example"))
    for i in range(0, len(sites), 10_000):
        cur.executemany(
            "INSERT INTO jetpack_monitor_sites (site_id, url, created_at) VALUES (%s, %s, %s)",
            [(s, u, START - timedelta(days=400)) for s, u in sites[i : i + 10_000]],
        )
    rows = []
    for site in range(1, SITES + 1):
        for k in range(2):
            began = START + timedelta(seconds=rng.randrange(90 * 86_400))
            rows.append(
                (f"c{site}-{k}", site, "http", "resolved", 4, began, began + timedelta(minutes=5))
            )
        if site % 5 == 0:
            began = END - timedelta(seconds=rng.randrange(7 * 86_400))
            rows.append((f"o{site}", site, "http", "down", 4, began, None))
    # the heavy site: 10,000 events over the 90 days, a few minutes each, some overlapping;
    # a mix of confirmed outages, false alarms (severity 3) and TLS warnings
    step = 90 * 86_400 / HEAVY_EVENTS
    for k in range(HEAVY_EVENTS):
        began = START + timedelta(seconds=k * step + rng.random() * step)
        check, severity = rng.choice([("http", 4), ("tcp", 4), ("http", 3), ("tls_expiry", 1)])
        ended = began + timedelta(seconds=rng.randrange(30, 1200))
        rows.append((f"h{k}", HEAVY_SITE, check, "resolved", severity, began, ended))
    for i in range(0, len(rows), 10_000):
        cur.executemany(
            "INSERT INTO jetmon_events (id, site_id, check_type, state, severity, started_at,"
            " ended_at, resolution_reason) VALUES (%s, %s, %s, %s, %s, %s, %s, 'x')",
            rows[i : i + 10_000],
        )
        conn.commit()
    cur.execute("ANALYZE TABLE jetmon_events, jetpack_monitor_sites")
    cur.fetchall()
    conn.commit()
    conn.close()


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(name: str, samples: list[float]) -> str:
    return (
        f"{name:<44} p50 {pct(samples, 50):7.2f} ms   p99 {pct(samples, 99):7.2f} ms"
        f"   mean {statistics.fmean(samples):7.2f} ms   n={len(samples)}"
    )


async def timed(n: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(min(20, n)):  # warm-up: pools, caches, the buffer pool
        await call()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def bench(requests: int) -> int:
    rng = random.Random(9)
    db = f"sw_bench_{uuid.uuid4().hex[:8]}"
    admin = connect()
    admin.cursor().execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    url = f"mysql+asyncmy://root@127.0.0.1:3306/{db}"
    proc = None
    try:
        await upgrade(url)
        started = time.perf_counter()
        await asyncio.to_thread(fill, db, rng)
        print(
            f"filled {SITES:,} sites, {HEAVY_EVENTS:,} events on site {HEAVY_SITE} "
            f"in {time.perf_counter() - started:.0f} s"
        )
        port = free_port()
        env = {
            **os.environ,
            "SITEWATCH_DATABASE_URL": url,
            "SITEWATCH_API_LISTEN": f"127.0.0.1:{port}",
            # reads need no broker; the publisher keeps retrying in the background
            "SITEWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "SITEWATCH_LOG_LEVEL": "WARNING",
            "SITEWATCH_LOG_FORMAT": "json",
        }
        created = await asyncio.create_subprocess_exec(
            *(SITEWATCH, "keys", "create", "--name", "bench", "--scope", "read"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await created.communicate()
        token = out.decode().splitlines()[-1]
        proc = await asyncio.create_subprocess_exec(
            SITEWATCH,
            "api",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        frm, to = START.strftime("%Y-%m-%dT%H:%M:%S.000Z"), END.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        uptime_path = f"/api/v1/sites/{HEAVY_SITE}/uptime?from={frm}&to={to}"
        async with aiohttp.ClientSession(base, headers=headers) as http:
            for _ in range(100):
                try:
                    async with http.get("/api/v1/sites?limit=1") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)

            async def get(path: str) -> dict[str, object]:
                async with http.get(path) as r:
                    assert r.status == 200, (r.status, await r.text())
                    body: dict[str, object] = await r.json()
                    return body

            async def fetch(path: str) -> None:
                """What is timed: the whole answer read, not parsed (the client shares
                the machine's two cores with the API and MariaDB)."""
                async with http.get(path) as r:
                    await r.read()
                    assert r.status == 200

            report = await get(uptime_path)
            first = await get("/api/v1/events?state=open")
            deep = first
            for _ in range(100):  # 100 pages in: 5,000 open events down the list
                deep = await get(f"/api/v1/events?state=open&cursor={deep['next_cursor']}")
            deep_path = f"/api/v1/events?state=open&cursor={deep['next_cursor']}"
            print(
                f"uptime report: {len(report['incidents'])} incidents, "  # type: ignore[arg-type]
                f"down {report['down_s']} s, ratio {report['uptime_ratio']}"
            )
            api_uptime = await timed(requests, lambda: fetch(uptime_path))
            api_open = await timed(requests, lambda: fetch("/api/v1/events?state=open"))
            api_deep = await timed(requests, lambda: fetch(deep_path))

        engine = make_engine(url)
        uptime_sql = sa.text(
            "SELECT id, check_type, severity, started_at, ended_at FROM jetmon_events"
            " WHERE site_id = :s AND (ended_at IS NULL OR ended_at > :f) AND started_at < :t"
            " AND check_type IN ('dns', 'http', 'tcp')"
        )
        open_sql = sa.text(
            "SELECT * FROM jetmon_events WHERE ended_at IS NULL"
            " ORDER BY started_at DESC, id DESC LIMIT 51"
        )

        async def bare(stmt: sa.TextClause, **params: object) -> None:
            async with engine.connect() as conn:
                (await conn.execute(stmt, params)).all()

        base_uptime = await timed(requests, lambda: bare(uptime_sql, s=HEAVY_SITE, f=START, t=END))
        base_open = await timed(requests, lambda: bare(open_sql))
        await engine.dispose()
        print()
        print(line("GET /api/v1/sites/{id}/uptime (90 d, 10k ev)", api_uptime))
        print(line("  baseline: bare SQL of its events read", base_uptime))
        print(line("GET /api/v1/events?state=open", api_open))
        print(line("GET /api/v1/events?state=open, page 101", api_deep))
        print(line("  baseline: bare SQL of the open page", base_open))
        ok = pct(api_uptime, 99) <= 50 and pct(api_open, 99) <= 50 and pct(api_deep, 99) <= 50
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\ntarget p99 <= 50 ms: {'met' if ok else 'NOT met'} (load average {load})")
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            await proc.wait()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per figure")
    args = parser.parse_args()
    return asyncio.run(bench(args.requests))


if __name__ == "__main__":
    sys.exit(main())
