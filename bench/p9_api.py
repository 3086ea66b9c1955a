"""P9: API read latency on MariaDB (target: p99 <= 50 ms each).

Run from the repository root: `.venv/bin/python bench/p9_api.py [--requests N]`.
Creates a scratch database on 127.0.0.1:3306 (migrated, so with the indexes of migration
0004), fills it with 100,000 sites (two closed events each, an open one for a fifth of
them) and one site with 10,000 events over 90 days, starts the real `sitewatch api`
process with a read key, and measures, one request at a time over a keep-alive connection:

- `GET /api/v1/sites/{id}/uptime` over those 90 days (the whole report: key check, reads,
  the pure `sitewatch-1` function, JSON), repeated (the API keeps the site's closed
  events while its transitions do not move) and each after a change to the site (a new
  transition row: the events are read again; figure shown, not the target's);
- `GET /api/v1/events?state=open` (first page, 50 newest open events of 100,000 sites),
  and a page deep in the list through its cursor;

beside a baseline measured in the same run: the bare SQL of each read through the same
driver (asyncmy), no HTTP, no Python beyond fetching the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import sqlalchemy as sa
from apibench import (
    HEAVY_EVENTS,
    HEAVY_SITE,
    SITEWATCH,
    TRANSITION_SQL,
    api_env,
    connect,
    heavy_events,
    insert_events,
    line,
    load_average,
    pct,
    running_api,
    scratch_database,
    timed,
    transition_of,
)

from sitewatch.sink.db import make_engine

SITES = 100_000
END = datetime(2026, 12, 1)
START = END - timedelta(days=90)


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
    rows: list[tuple[Any, ...]] = []
    for site in range(1, SITES + 1):
        for k in range(2):
            began = START + timedelta(seconds=rng.randrange(90 * 86_400))
            rows.append(
                (f"c{site}-{k}", site, "http", "resolved", 4, began, began + timedelta(minutes=5))
            )
        if site % 5 == 0:
            began = END - timedelta(seconds=rng.randrange(7 * 86_400))
            rows.append((f"o{site}", site, "http", "down", 4, began, None))
    insert_events(conn, rows + heavy_events(rng, START))
    conn.close()


async def bench(requests: int) -> int:
    rng = random.Random(9)
    async with scratch_database() as (db, url):
        started = time.perf_counter()
        await asyncio.to_thread(fill, db, rng)
        print(
            f"filled {SITES:,} sites, {HEAVY_EVENTS:,} events on site {HEAVY_SITE} "
            f"in {time.perf_counter() - started:.0f} s"
        )
        env = api_env(url)
        created = await asyncio.create_subprocess_exec(
            *(SITEWATCH, "keys", "create", "--name", "bench", "--scope", "read"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await created.communicate()
        token = out.decode().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        frm, to = START.strftime("%Y-%m-%dT%H:%M:%S.000Z"), END.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        uptime_path = f"/api/v1/sites/{HEAVY_SITE}/uptime?from={frm}&to={to}"
        async with (
            running_api(env) as base,
            aiohttp.ClientSession(base, headers=headers) as http,
        ):

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

            # the same after each of a stream of changes to the site: every request
            # then reads the site's events again (its version moved)
            bump = connect(db)

            def change(k: int) -> None:
                row = (f"bump{k}", HEAVY_SITE, "http", "resolved", 4, END, END)
                bump.cursor().execute(TRANSITION_SQL, transition_of(row))
                bump.commit()

            api_changed = []
            for k in range(max(requests // 4, 20)):
                await asyncio.to_thread(change, k)
                began = time.perf_counter()
                await fetch(uptime_path)
                api_changed.append((time.perf_counter() - began) * 1000)
            bump.close()
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
        print(line("  the same, each after a change to the site", api_changed))
        print(line("  baseline: bare SQL of its events read", base_uptime))
        print(line("GET /api/v1/events?state=open", api_open))
        print(line("GET /api/v1/events?state=open, page 101", api_deep))
        print(line("  baseline: bare SQL of the open page", base_open))
        ok = pct(api_uptime, 99) <= 50 and pct(api_open, 99) <= 50 and pct(api_deep, 99) <= 50
        print(
            f"\ntarget p99 <= 50 ms: {'met' if ok else 'NOT met'} (load average {load_average()})"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per figure")
    args = parser.parse_args()
    return asyncio.run(bench(args.requests))


if __name__ == "__main__":
    sys.exit(main())
