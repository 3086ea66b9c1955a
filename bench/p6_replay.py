"""P6: check results/s through `sitewatch replay` (target >= 100,000/s).

Run: .venv/bin/python bench/p6_replay.py [--results N] [--sites N] [--partitions N]

Starts a private Tansu broker, writes N synthetic results (about 2% of sites failing
at a time, so events open, promote and close) plus the sites records and one tick per
second of stream time per partition, then measures in the same run:

- replay: `run_replay` over the whole range, exactly what `sitewatch replay` does
  (hint + backward check of the start, per-partition reads, the worker's Processor);
- baseline: a raw aiokafka consume of the same topic (no decoding), same fetch sizes;
- core only: the same records fed to `Replay` from memory (no Kafka);

and prints results/s for each and replay/baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sitewatch import gcpolicy
from sitewatch.devbroker import Broker
from sitewatch.settings import Settings
from sitewatch.streams import records, replay, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.message import Record
from sitewatch.streams.state import Config
from sitewatch.streams.topics import TopicNames

BASE = timefmt.to_ms("2026-11-26T00:00:00.000Z")
STEP_MS = 10


def make_rows(n: int, sites: int, partitions: int) -> dict[int, list[tuple[bytes | None, bytes]]]:
    """Per partition, in order: results of its sites, and a tick every second."""
    rng = random.Random(6)
    failing: set[int] = set()
    out: dict[int, list[tuple[bytes | None, bytes]]] = {p: [] for p in range(partitions)}
    next_tick = BASE + 1000
    for i in range(n):
        at = BASE + i * STEP_MS
        while at >= next_tick:
            for p in range(partitions):
                tick = records.Tick(
                    tick_id=f"t{p}-{next_tick}", partition=p, at=timefmt.from_ms(next_tick)
                )
                out[p].append((None, records.encode(tick)))
            next_tick += 1000
        site = rng.randint(1, sites)
        if rng.random() < (0.2 if site in failing else 0.004):
            failing.symmetric_difference_update({site})
        rec = records.CheckResult(
            result_id=f"r{i}",
            site_id=site,
            check_type=CheckType.HTTP,
            ok=site not in failing,
            observed_at=timefmt.from_ms(at),
            probe="p",
        )
        out[replay.partition_of(site, partitions)].append(
            (records.site_key(site), records.encode(rec))
        )
    return out


async def produce(
    bootstrap: str, topic: str, rows: dict[int, list[tuple[bytes | None, bytes]]]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        for p, items in rows.items():
            futures = [await producer.send(topic, value=v, key=k, partition=p) for k, v in items]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def raw_consume(bootstrap: str, topic: str, partitions: int) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        count = 0
        began = time.perf_counter()
        for p in range(partitions):  # like replay: one partition at a time
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            consumer.seek(tp, 0)
            idle = 0
            while idle < 2:
                got = await consumer.getmany(tp, timeout_ms=100, max_records=replay.FETCH_RECORDS)
                msgs = got.get(tp, [])
                count += len(msgs)
                idle = 0 if msgs else idle + 1
        return count, time.perf_counter() - began
    finally:
        await consumer.stop()


def core_only(
    rows: dict[int, list[tuple[bytes | None, bytes]]],
    names: TopicNames,
    sites: list[bytes],
    window: replay.Window,
) -> float:
    rp = replay.Replay(Config(), names, window)
    parts = len(rows)
    for p in rows:
        rp.add_sites(
            p,
            [
                Record(names.sites, p, 0, records.site_key(i), s)
                for i, s in enumerate(sites, start=1)
                if replay.partition_of(i, parts) == p
            ],
        )
    raws = {
        p: [Record(names.check_results, p, o, k, v, 1) for o, (k, v) in enumerate(items)]
        for p, items in rows.items()
    }
    with gcpolicy.rare():  # as run_replay does
        began = time.perf_counter()
        for p, items in raws.items():
            for i in range(0, len(items), replay.FETCH_RECORDS):
                rp.feed(p, items[i : i + replay.FETCH_RECORDS])
        return time.perf_counter() - began


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=int, default=300_000)
    ap.add_argument("--sites", type=int, default=5_000)
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args()
    names = TopicNames("p6.")
    rows = make_rows(args.results, args.sites, args.partitions)
    total = sum(len(v) for v in rows.values())
    sites = [
        records.encode(records.SiteRecord(site_id=s, url=f"http://s{s}.test/"))
        for s in range(1, args.sites + 1)
    ]
    end_ms = BASE + args.results * STEP_MS
    window = replay.Window(start_ms=BASE, end_ms=end_ms + 1, lookback_ms=0, grace_ms=0)
    with Broker() as broker:
        await ensure_topics(broker.bootstrap, names, args.partitions)
        print(
            f"writing {args.results:,} results + {total - args.results:,} ticks ...",
            file=sys.stderr,
        )
        t0 = time.perf_counter()
        # settings first, as in production (results of a site without settings are parked)
        site_rows: dict[int, list[tuple[bytes | None, bytes]]] = {
            p: [] for p in range(args.partitions)
        }
        for s, value in enumerate(sites, start=1):
            site_rows[replay.partition_of(s, args.partitions)].append((records.site_key(s), value))
        await produce(broker.bootstrap, names.sites, site_rows)
        await produce(broker.bootstrap, names.check_results, rows)
        print(f"  written in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

        raw_n, raw_s = await raw_consume(broker.bootstrap, names.check_results, args.partitions)
        conf = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=names.prefix)
        run = await replay.run_replay(conf, window, replay.WhatIf(), progress=False)
        core_s = core_only(rows, names, sites, window)
    assert raw_n == total, (raw_n, total)
    replay_rate = total / run.elapsed_s
    raw_rate = raw_n / raw_s
    results_rate = args.results / run.elapsed_s
    print(
        f"P6 replay: {results_rate:,.0f} results/s ({replay_rate:,.0f} records/s incl. ticks; "
        f"{total:,} records in {run.elapsed_s:.2f}s, {len(run.transitions):,} transitions)"
    )
    print(f"baseline raw consume of the same topic: {raw_rate:,.0f} records/s ({raw_s:.2f}s)")
    print(f"ratio replay/baseline: {replay_rate / raw_rate:.2f}")
    print(f"core only (same records from memory, no Kafka): {total / core_s:,.0f} records/s")
    verdict = "met" if results_rate >= 100_000 else "NOT met"
    print(f"target >= 100,000 results/s: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
