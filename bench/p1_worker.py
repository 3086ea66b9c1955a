"""P1: worker results/s through the real broker, beside the raw aiokafka ceiling.

Run: .venv/bin/python bench/p1_worker.py [--results N] [--sites N]

Both figures are measured in this run on one Tansu broker started here:
- ceiling: a bare aiokafka loop that consumes the results and produces one record per
  result (consume -> produce, no processing), the most a Kafka shell can do here;
- P1: `sitewatch worker` (the real CLI, Faust, tables, changelog) over the same results,
  timed by the consumer group's committed offsets.
Targets: P1 >= 20,000 results/s and >= 50 % of the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sitewatch.devbroker import Broker
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames

PARTITIONS = 8
RESULTS = Path(__file__).resolve().parent / "results"
BASE = timefmt.to_ms("2026-11-26T00:00:00.000Z")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def load(bootstrap: str, topic: str, rows: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        for start in range(0, len(rows), 20_000):
            futures = [
                await producer.send(topic, value=v, key=k) for k, v in rows[start : start + 20_000]
            ]
            await asyncio.gather(*futures)
            say(f"  loaded {start + len(futures):,}/{len(rows):,} into {topic}")
    finally:
        await producer.stop()


def make_results(n: int, sites: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(3)
    failing: set[int] = set()
    rows = []
    for i in range(n):
        site = rng.randint(1, sites)
        if rng.random() < (0.2 if site in failing else 0.002):
            failing.symmetric_difference_update({site})
        rec = records.CheckResult(
            result_id=f"r{i}",
            site_id=site,
            check_type=CheckType.HTTP,
            ok=site not in failing,
            probe="bench",
            observed_at=timefmt.from_ms(BASE + i),
        )
        rows.append((records.site_key(site), records.encode(rec)))
    return rows


async def ceiling(bootstrap: str, source: str, sink: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    tps = [TopicPartition(source, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    done = 0
    start = time.perf_counter()
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            futures = []
            for msgs in batch.values():
                for m in msgs:
                    futures.append(await producer.send(sink, value=m.value, key=m.key))
            await asyncio.gather(*futures)
            done += len(futures)
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()


async def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        total = 0
        for p in range(PARTITIONS):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


async def run_worker(
    bootstrap: str, prefix: str, n: int, state: Path, profile: str | None = None
) -> float:
    env = {
        **os.environ,
        "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_STATE_DIR": str(state),
        "SITEWATCH_PARTITIONS": str(PARTITIONS),
        "SITEWATCH_LOG_LEVEL": "WARNING",
    }
    exe = str(Path(sys.executable).with_name("sitewatch"))
    log = RESULTS / "p1-worker.log"  # kept for a look after the run
    RESULTS.mkdir(exist_ok=True)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        proc = await asyncio.create_subprocess_exec(
            exe, "worker", env=env, start_new_session=True, stdout=out, stderr=out
        )
    finally:
        os.close(out)
    topic = TopicNames(prefix).check_results
    group = f"{prefix}worker"
    try:
        first: tuple[float, int] | None = None
        last = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            done = await committed(bootstrap, group, topic)
            if done and first is None:
                first = (time.perf_counter(), done)
                if profile:  # 10 s of the running worker under py-spy (speedscope format)
                    spy = ["py-spy", "record", "--pid", str(proc.pid), "-d", "10"]
                    await asyncio.create_subprocess_exec(
                        *spy, "-f", "speedscope", "-o", profile, stdout=subprocess.DEVNULL
                    )
            if done != last:
                say(f"  worker committed {done:,}/{n:,}")
                last = done
            if done >= n:
                assert first is not None
                if done == first[1]:
                    raise SystemExit("worker finished between two polls: raise --results")
                return (done - first[1]) / (time.perf_counter() - first[0])
        raise SystemExit("worker did not finish in 600 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=int, default=300_000)
    parser.add_argument("--sites", type=int, default=20_000)
    parser.add_argument("--profile", help="write a py-spy profile of the worker here")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="p1-"))
    with Broker(log_path=tmp / "tansu.log") as broker:
        bootstrap = broker.bootstrap
        rows = make_results(args.results, args.sites)
        raw = TopicNames("raw.")
        await ensure_topics(bootstrap, raw, PARTITIONS, extra=["raw.out"])
        await load(bootstrap, raw.check_results, rows)
        say("measuring the aiokafka consume->produce ceiling")
        top = await ceiling(bootstrap, raw.check_results, "raw.out", len(rows))
        names = TopicNames("bench.")
        await ensure_topics(bootstrap, names, PARTITIONS)
        sites = [
            (
                records.site_key(s),
                records.encode(records.SiteRecord(site_id=s, url=f"http://s{s}.test/")),
            )
            for s in range(1, args.sites + 1)
        ]
        await load(bootstrap, names.sites, sites)
        await load(bootstrap, names.check_results, rows)
        say("measuring sitewatch worker")
        worker = await run_worker(bootstrap, "bench.", len(rows), tmp / "state", args.profile)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"ceiling (aiokafka consume->produce): {top:10,.0f} records/s")
    print(f"P1 sitewatch worker:                 {worker:10,.0f} results/s  (target >= 20,000)")
    print(f"ratio worker/ceiling:                {worker / top:10.0%}  (target >= 50 %)")


if __name__ == "__main__":
    # a SIGTERM (e.g. from `timeout`) still runs the cleanup of the broker and worker
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    asyncio.run(main())
