"""P4: transitions/s into MariaDB, offsets committed in the same transaction.

Run from the repository root: `.venv/bin/python bench/p4_sink.py [--count N]`.
Creates a scratch database on 127.0.0.1:3306, migrates it, and measures:

- sink: the sink's real batch path (decode, load state, fold transitions, write
  transitions + events + projection + offsets in one transaction per batch);
- baseline: a bare executemany INSERT of the same transition rows, one transaction
  per batch (what MariaDB alone allows here), and the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid

import pymysql
import sqlalchemy as sa

from sitewatch.migrations.command import upgrade
from sitewatch.sink import tables as t
from sitewatch.sink.batch import BatchApplier
from sitewatch.sink.db import make_engine
from sitewatch.sink.gate import WriteGate
from sitewatch.sink.synthetic import as_messages, transitions
from sitewatch.streams.topics import TopicNames


def admin(sql: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


async def bench(count: int, batch: int, sites: int, driver: str = "asyncmy") -> None:
    names = TopicNames("bench.")
    items = list(transitions(random.Random(1), sites, count))
    msgs = as_messages(names.site_events, items, partitions=8)
    db = f"sw_bench_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    url = f"mysql+{driver}://root@127.0.0.1:3306/{db}"
    try:
        await upgrade(url)
        engine = make_engine(url)
        gate, applier = WriteGate(engine, True), BatchApplier(names, "bench.sink")
        started = time.perf_counter()
        for i in range(0, len(msgs), batch):
            async with gate.transaction() as tx:
                await applier.apply(tx, msgs[i : i + batch], 0)
        sink_s = time.perf_counter() - started
        async with engine.connect() as conn:
            stored = (
                await conn.execute(sa.select(sa.func.count()).select_from(t.transitions))
            ).scalar()
            assert stored == count, (stored, count)
            rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    sa.select(*[c for c in t.transitions.c if c.name != "id"])
                )
            ]
            await conn.execute(sa.text("CREATE TABLE baseline LIKE jetmon_event_transitions"))
        baseline = sa.Table("baseline", sa.MetaData(), *[c._copy() for c in t.transitions.c])
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            async with engine.begin() as conn:
                await conn.execute(sa.insert(baseline), rows[i : i + batch])
        base_s = time.perf_counter() - started
        await engine.dispose()
    finally:
        admin(f"DROP DATABASE IF EXISTS {db}")
    sink_rate, base_rate = count / sink_s, count / base_s
    print(f"P4 sink: {count} transitions over {sites} sites, batches of {batch}")
    print(f"  sink (events + transitions + projection + offsets, 1 txn/batch): {sink_rate:,.0f}/s")
    print(f"  baseline (bare executemany INSERT of the same rows, 1 txn/batch): {base_rate:,.0f}/s")
    print(f"  ratio sink/baseline: {sink_rate / base_rate:.2f}   target >= 10,000/s: "
          f"{'met' if sink_rate >= 10_000 else 'NOT met'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--driver", choices=["asyncmy", "aiomysql"], default="asyncmy")
    parser.add_argument("--sites", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(bench(args.count, args.batch, args.sites, args.driver))


if __name__ == "__main__":
    main()
