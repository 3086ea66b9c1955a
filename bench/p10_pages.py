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
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from apibench import (
    HEAVY_EVENTS,
    HEAVY_SITE,
    api_env,
    connect,
    heavy_events,
    insert_events,
    line,
    load_average,
    running_api,
    scratch_database,
    timed,
)

from sitewatch import clock
from sitewatch.api import daily, page_queries
from sitewatch.sink.db import make_engine

SITES = 100_000
DENSE_SITES = 50
DENSE_EVENTS = 200
NOW = datetime.now(UTC).replace(tzinfo=None)
START = NOW - timedelta(days=90)


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
    rows: list[tuple[Any, ...]] = []
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
    insert_events(conn, rows + heavy_events(rng, START))
    conn.close()


async def bench(requests: int, count: int) -> int:
    rng = random.Random(10)
    async with scratch_database() as (db, url):
        started = time.perf_counter()
        await asyncio.to_thread(fill, db, rng, count)
        print(f"filled {count:,} sites in {time.perf_counter() - started:.0f} s")
        async with running_api(api_env(url)) as base, aiohttp.ClientSession(base) as http:

            async def fetch(path: str, status: int = 200, **headers: str) -> aiohttp.ClientResponse:
                async with http.get(path, headers=headers) as r:
                    await r.read()
                    assert r.status == status, (path, r.status)
                    return r

            first = await fetch("/")
            size = first.content_length or 0
            print(f"status page: {size:,} bytes")
            status = await timed(requests, lambda: fetch("/"), warm_up=10)
            live = await timed(requests, lambda: fetch("/status/live"), warm_up=10)
            etag = ""
            renewed = 0

            async def poll() -> None:
                """A poll as the page's script makes it; the ETag changes with the minute
                (a 200 then, as in the browser), which is counted, not timed apart."""
                nonlocal etag, renewed
                async with http.get("/status/live", headers={"If-None-Match": etag}) as r:
                    await r.read()
                    if r.status == 200:
                        etag, renewed = r.headers["ETag"], renewed + 1
                    else:
                        assert r.status == 304, r.status

            await poll()
            renewed = 0
            quiet = await timed(requests, poll, warm_up=0)
            heavy = await timed(requests, lambda: fetch(f"/sites/{HEAVY_SITE}"), warm_up=10)
            typical = await timed(requests, lambda: fetch("/sites/7"), warm_up=10)

        engine = make_engine(url)

        async def reads() -> None:
            now = clock.now_ms()
            since = daily.day_windows(now)[0][0]
            async with engine.connect() as conn:
                rows, _ = await page_queries.status_sites(conn, 50, None)
                await page_queries.window_spans(conn, [r.site_id for r in rows], since, now)
                await page_queries.state_counts(conn)
                await page_queries.up_maintenance(conn)
                await page_queries.open_incidents(conn, 50)

        base_reads = await timed(requests, reads, warm_up=10)
        await engine.dispose()
    print()
    print(line("GET / (50 sites x 90 bars, worst first)", status))
    print(line("GET /status/live (200)", live))
    print(line(f"GET /status/live (304, nothing changed; {renewed} x 200)", quiet))
    print(line("  baseline: the status page's reads alone", base_reads))
    print(line(f"GET /sites/{{id}} ({HEAVY_EVENTS:,} events)", heavy))
    print(line("GET /sites/{id} (typical)", typical))
    print(f"\n(load average {load_average()})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per figure")
    # fewer sites fill faster (the page is the same 50 dense sites; counts read fewer rows)
    parser.add_argument("--sites", type=int, default=SITES, help="active sites (>= 50)")
    args = parser.parse_args()
    return asyncio.run(bench(args.requests, max(DENSE_SITES, args.sites)))


if __name__ == "__main__":
    sys.exit(main())
