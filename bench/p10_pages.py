"""P10: the status pages on MariaDB: the status page's 90 daily bars for a page of sites,
the live part's polls, and a site page (uptime over 4 windows, 90 bars, events).

Run from the repository root: `.venv/bin/python bench/p10_pages.py [--requests N] [--sites N]`.
Creates a scratch database on 127.0.0.1:3306 (migrated), fills it with 100,000 active
sites (two closed outages each over the last 90 days; a fifth with an open one, projected
down, so they come first on the status page), of which the first 50 have 200 events
each (the densest first page), and one site with 10,000 events over 90 days (the P9
site), starts the real `sitewatch api`, and measures one request at a time over a
keep-alive connection:

- `GET /` (first page: 50 sites worst first, their 90 bars, open incidents, counts);
- `GET /status/live` answered 200, and answered 304 (a poll while nothing changed);
- `GET /sites/{id}` for the 10,000-event site and for a typical one;

beside a baseline of the status page's database reads alone (the same queries, through
the same driver, no HTTP, no report, no template).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pymysql

from sitewatch.api import daily, page_queries
from sitewatch.api.timefmt import to_ms
from sitewatch.devbroker import free_port
from sitewatch.migrations.command import upgrade
from sitewatch.sink.db import make_engine

SITES = 100_000
DENSE_SITES = 50
DENSE_EVENTS = 200
HEAVY_SITE = 424_242
HEAVY_EVENTS = 10_000
NOW = datetime.now(UTC).replace(tzinfo=None)
START = NOW - timedelta(days=90)
SITEWATCH = str(Path(sys.executable).with_name("sitewatch"))


def connect(db: str | None = None) -> pymysql.Connection:  # type: ignore[type-arg]
    return pymysql.connect(host="127.0.0.1", user="root", password="", database=db)


def fill(db: str, rng: random.Random, count: int) -> None:
    conn = connect(db)
    cur = conn.cursor()
    sites = []
    for i in range(1, count + 1):
        down = i % 5 == 0 or i <= DENSE_SITES
        sites.append(
            (
                i,
                f"https://s{i}.example",
                "down" if down else "up",
                4 if down else 0,
                2 if down else 1,
            )
        )
    sites.append((HEAVY_SITE, "https://heavy.example", "up", 0, 1))
    for i in range(0, len(sites), 10_000):
        cur.executemany(
            "INSERT INTO jetpack_monitor_sites (site_id, url, current_state, current_severity,"
            " site_status, created_at) VALUES (%s, %s, %s, %s, %s, %s)",
            [(*s, START - timedelta(days=400)) for s in sites[i : i + 10_000]],
        )
    rows = []
    span_s = 90 * 86_400
    for site in range(1, count + 1):
        closed = DENSE_EVENTS if site <= DENSE_SITES else 2
        for k in range(closed):
            began = START + timedelta(seconds=rng.randrange(span_s - 3600))
            check, severity = rng.choice([("http", 4), ("tcp", 4), ("http", 3)])
            ended = began + timedelta(seconds=rng.randrange(30, 1200))
            rows.append((f"c{site}-{k}", site, check, "resolved", severity, began, ended))
        if site % 5 == 0 or site <= DENSE_SITES:
            began = NOW - timedelta(seconds=rng.randrange(7 * 86_400))
            rows.append((f"o{site}", site, "http", "down", 4, began, None))
    step = span_s / HEAVY_EVENTS
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
    for _ in range(min(10, n)):  # warm-up: pools, caches, the buffer pool
        await call()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def bench(requests: int, count: int) -> int:
    rng = random.Random(10)
    db = f"sw_bench_{uuid.uuid4().hex[:8]}"
    admin = connect()
    admin.cursor().execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    url = f"mysql+asyncmy://root@127.0.0.1:3306/{db}"
    proc = None
    try:
        await upgrade(url)
        started = time.perf_counter()
        await asyncio.to_thread(fill, db, rng, count)
        print(f"filled {count:,} sites in {time.perf_counter() - started:.0f} s")
        port = free_port()
        env = {
            **os.environ,
            "SITEWATCH_DATABASE_URL": url,
            "SITEWATCH_API_LISTEN": f"127.0.0.1:{port}",
            # the pages need no broker; the publisher keeps retrying in the background
            "SITEWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "SITEWATCH_LOG_LEVEL": "WARNING",
            "SITEWATCH_LOG_FORMAT": "json",
        }
        proc = await asyncio.create_subprocess_exec(
            SITEWATCH,
            "api",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    async with http.get("/api/v1/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)

            async def fetch(path: str, status: int = 200, **headers: str) -> aiohttp.ClientResponse:
                async with http.get(path, headers=headers) as r:
                    await r.read()
                    assert r.status == status, (path, r.status)
                    return r

            first = await fetch("/")
            size = first.content_length or 0
            etag = (await fetch("/status/live")).headers["ETag"]
            print(f"status page: {size:,} bytes")
            status = await timed(requests, lambda: fetch("/"))
            live = await timed(requests, lambda: fetch("/status/live"))
            quiet = await timed(
                requests, lambda: fetch("/status/live", 304, **{"If-None-Match": etag})
            )
            heavy = await timed(requests, lambda: fetch(f"/sites/{HEAVY_SITE}"))
            typical = await timed(requests, lambda: fetch("/sites/7"))

        engine = make_engine(url)

        async def reads() -> None:
            now = to_ms(datetime.now(UTC))
            since = daily.day_windows(now)[0][0]
            async with engine.connect() as conn:
                rows, _ = await page_queries.status_sites(conn, 50, None)
                await page_queries.window_spans(conn, [r.site_id for r in rows], since, now)
                await page_queries.state_counts(conn)
                await page_queries.up_maintenance(conn)
                await page_queries.open_incidents(conn, 50)

        base = await timed(requests, reads)
        await engine.dispose()
        print()
        print(line("GET / (50 sites x 90 bars, worst first)", status))
        print(line("GET /status/live (200)", live))
        print(line("GET /status/live (304, nothing changed)", quiet))
        print(line("  baseline: the status page's reads alone", base))
        print(line(f"GET /sites/{{id}} ({HEAVY_EVENTS:,} events)", heavy))
        print(line("GET /sites/{id} (typical)", typical))
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n(load average {load})")
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            await proc.wait()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per figure")
    # fewer sites fill faster (the page is the same 50 dense sites; counts read fewer rows)
    parser.add_argument("--sites", type=int, default=SITES, help="active sites (>= 50)")
    args = parser.parse_args()
    return asyncio.run(bench(args.requests, max(DENSE_SITES, args.sites)))


if __name__ == "__main__":
    sys.exit(main())
