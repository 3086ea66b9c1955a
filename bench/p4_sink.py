"""P4: transitions/s into MariaDB, offsets committed in the same transaction.

Run from the repository root: `.venv/bin/python bench/p4_sink.py [--count N]
[--driver asyncmy|aiomysql] [--rounds 3]`. Creates a scratch database on
127.0.0.1:3306, migrates it, and measures, alternating in each round:

- sink: the sink's real batch path as `sitewatch sink` runs it (`sink/pipeline.py`:
  decode, load state, fold, then write transitions + events + projection + offsets
  in one transaction per batch, the next batch folded while one is written);
- sink, sequential: the same batches one after the other (`--no-sequential` skips it);
- baseline: a bare executemany INSERT of the same transition rows through SQLAlchemy,
  one transaction per batch (the baseline of the goal), and the same rows as tuples
  straight to the driver with JSON and datetimes as text, as the sink sends them
  (`exec_driver_sql`, the cheapest insert there is);

and prints each round, the medians and the ratios to the same-run baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pymysql
import sqlalchemy as sa

from sitewatch.migrations.command import upgrade
from sitewatch.sink import tables as t
from sitewatch.sink.batch import BatchApplier, BatchResult
from sitewatch.sink.db import make_engine
from sitewatch.sink.gate import WriteGate
from sitewatch.sink.pipeline import Pipeline
from sitewatch.sink.rows import TRANSITION_COLUMNS
from sitewatch.streams.message import ConsumedRecord
from sitewatch.streams.topics import TopicNames

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from tests.sink.synthetic import as_messages, transitions


def admin(sql: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


TARGET_RATE = 10_000
TARGET_RATIO = 0.9


async def run_sink(url: str, msgs: list[ConsumedRecord], batch: int, pipelined: bool) -> float:
    """Seconds for the sink to write `msgs` into the empty database at `url`."""
    names = TopicNames("bench.")
    engine = make_engine(url)
    gate, applier = WriteGate(engine, True), BatchApplier(names, "bench.sink")

    async def sequential(part: Sequence[ConsumedRecord]) -> BatchResult:
        async with gate.transaction() as tx:
            return await applier.apply(tx, part, 0)

    async def publish(_: BatchResult) -> None:
        pass

    pipeline = Pipeline(gate, applier, sequential=sequential, publish=publish)
    started = time.perf_counter()
    for i in range(0, len(msgs), batch):
        if pipelined:
            await pipeline.submit(msgs[i : i + batch])
        else:
            await sequential(msgs[i : i + batch])
    await pipeline.flush()
    seconds = time.perf_counter() - started
    async with engine.connect() as conn:
        stored = (
            await conn.execute(sa.select(sa.func.count()).select_from(t.transitions))
        ).scalar()
    assert stored == len(msgs), (stored, len(msgs))
    await engine.dispose()
    return seconds


async def run_baselines(url: str, batch: int) -> tuple[float, float]:
    """(SQLAlchemy executemany, driver executemany) seconds for the stored transition rows."""
    engine = make_engine(url)
    cols = [c for c in t.transitions.c if c.name != "id"]
    async with engine.connect() as conn:
        rows = [
            dict(r._mapping)
            for r in await conn.execute(sa.select(*cols).order_by(t.transitions.c.id))
        ]
        for name in ("baseline", "baseline_raw"):
            await conn.execute(sa.text(f"CREATE TABLE {name} LIKE jetmon_event_transitions"))
        await conn.commit()
    baseline = sa.Table("baseline", sa.MetaData(), *[c._copy() for c in t.transitions.c])
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(baseline), rows[i : i + batch])
    orm_s = time.perf_counter() - started

    # driver-ready, as the sink sends them: JSON and datetimes as text
    def ready(c: str, v: Any) -> Any:
        if c == "metadata":
            return msgspec.json.encode(v).decode() if v else None
        return v.isoformat(" ") if isinstance(v, datetime) else v

    tuples = [tuple(ready(c, r[c]) for c in TRANSITION_COLUMNS) for r in rows]
    sql = (
        f"INSERT INTO baseline_raw ({', '.join(TRANSITION_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(TRANSITION_COLUMNS))})"
    )
    started = time.perf_counter()
    for i in range(0, len(tuples), batch):
        async with engine.begin() as conn:
            await conn.exec_driver_sql(sql, tuples[i : i + batch])  # type: ignore[arg-type]
    raw_s = time.perf_counter() - started
    await engine.dispose()
    return orm_s, raw_s


async def scratch(driver: str) -> tuple[str, str]:
    db = f"sw_bench_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    url = f"mysql+{driver}://root@127.0.0.1:3306/{db}"
    await upgrade(url)
    return db, url


async def bench(count: int, batch: int, sites: int, driver: str, rounds: int, seq: bool) -> None:
    names = TopicNames("bench.")
    items = list(transitions(random.Random(1), sites, count))
    msgs: list[ConsumedRecord] = as_messages(names.site_events, items, partitions=8)  # type: ignore[assignment]
    figures: dict[str, list[float]] = {"sink": [], "sequential": [], "orm": [], "raw": []}
    for n in range(rounds):
        made: list[str] = []
        try:
            db, url = await scratch(driver)
            made.append(db)
            figures["sink"].append(count / await run_sink(url, msgs, batch, True))
            orm_s, raw_s = await run_baselines(url, batch)
            figures["orm"].append(count / orm_s)
            figures["raw"].append(count / raw_s)
            if seq:
                db, url = await scratch(driver)
                made.append(db)
                figures["sequential"].append(count / await run_sink(url, msgs, batch, False))
        finally:
            for db in made:
                admin(f"DROP DATABASE IF EXISTS {db}")
        last = {k: v[-1] for k, v in figures.items() if v}
        print(
            f"round {n + 1} ({driver}): sink {last['sink']:,.0f}/s"
            + (f", sequential {last['sequential']:,.0f}/s" if seq else "")
            + f"; baseline SQLAlchemy executemany {last['orm']:,.0f}/s, driver executemany "
            f"{last['raw']:,.0f}/s; ratio {last['sink'] / last['orm']:.2f} / "
            f"{last['sink'] / last['raw']:.2f}",
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in figures.items() if v}
    ratio = statistics.median(s / o for s, o in zip(figures["sink"], figures["orm"], strict=True))
    raw_ratio = statistics.median(
        s / r for s, r in zip(figures["sink"], figures["raw"], strict=True)
    )
    print(f"P4 sink ({driver}): {count} transitions over {sites} sites, batches of {batch}")
    print(
        f"  sink (events + transitions + projection + offsets, 1 txn/batch): {med['sink']:,.0f}/s"
    )
    if seq:
        print(f"  sink, batches one after the other: {med['sequential']:,.0f}/s")
    print(
        f"  baseline (bare executemany INSERT of the same rows, 1 txn/batch): {med['orm']:,.0f}/s"
    )
    print(f"  the same rows as tuples straight to the driver: {med['raw']:,.0f}/s")
    print(f"  ratio sink/baseline: {ratio:.2f} (target >= {TARGET_RATIO}), sink/driver: "
          f"{raw_ratio:.2f}; target >= {TARGET_RATE:,}/s: "
          f"{'met' if med['sink'] >= TARGET_RATE else 'NOT met'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--driver", choices=["asyncmy", "aiomysql"], default="asyncmy")
    parser.add_argument("--sites", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-sequential", action="store_true", help="skip the sequential sink")
    args = parser.parse_args()
    asyncio.run(
        bench(args.count, args.batch, args.sites, args.driver, args.rounds, not args.no_sequential)
    )


if __name__ == "__main__":
    main()
