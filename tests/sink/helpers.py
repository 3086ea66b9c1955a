"""Feeding messages to the batch applier in-process (no broker), through the gate."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch.sink import tables as t
from sitewatch.sink.batch import BatchApplier, BatchResult
from sitewatch.sink.gate import WriteGate
from sitewatch.streams import records
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.message import ConsumedRecord, Record
from sitewatch.streams.topics import Topic, TopicNames

PREFIX = "sinktest."
TOPICS = TopicNames(PREFIX)
GROUP = f"{PREFIX}sink"
NOW_MS = 1_800_000_000_000


async def feed(
    engine: AsyncEngine,
    messages: Sequence[ConsumedRecord],
    *,
    writes: bool = True,
    batch: int = 10_000,
    prefix: str = PREFIX,
) -> list[BatchResult]:
    """Apply `messages` in batches of `batch`, as the sink of topic prefix `prefix` would."""
    gate = WriteGate(engine, writes)
    applier = BatchApplier(TopicNames(prefix), f"{prefix}sink")
    results = []
    for start in range(0, len(messages), batch):
        async with gate.transaction() as tx:
            results.append(await applier.apply(tx, messages[start : start + batch], NOW_MS))
    return results


class Log:
    """Numbers messages per (topic, partition) like a broker would."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    def msg(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> Record:
        off = self.next.get((topic, partition), 0)
        self.next[(topic, partition)] = off + 1
        return Record(topic, partition, off, key, value)

    def transition(self, tr: records.Transition, partition: int = 0) -> Record:
        return self.msg(
            TOPICS.site_events, partition, records.site_key(tr.site_id), records.encode(tr)
        )

    def site(self, site: records.SiteRecord, partition: int = 0) -> Record:
        return self.msg(
            TOPICS.sites, partition, records.site_key(site.site_id), records.encode(site)
        )

    def tombstone(self, site_id: int, partition: int = 0) -> Record:
        return self.msg(TOPICS.sites, partition, records.site_key(site_id), None)


# --- running the real `sitewatch sink` against the real broker


SITEWATCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "sitewatch")
PARTITIONS = 4


async def make_topics(bootstrap: str, prefix: str) -> TopicNames:
    names = TopicNames(prefix)
    await ensure_topics(bootstrap, names, PARTITIONS, topics=[Topic.SITES, Topic.SITE_EVENTS])
    return names


async def produce(
    bootstrap: str, items: Sequence[tuple[str, bytes | None, bytes | None]]
) -> dict[tuple[str, int], int]:
    """Send (topic, key, value) in order; returns the end offset of each partition written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in items]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    ends: dict[tuple[str, int], int] = {}
    for meta in metas:
        tp = (meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return ends


async def read_all(
    bootstrap: str, topics: Sequence[str], ends: dict[tuple[str, int], int]
) -> list[Record]:
    """Every record up to `ends`, without a consumer group (for expected results)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[Record] = []
    try:
        tps = [TopicPartition(tp, p) for (tp, p) in ends if tp in topics]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = {tp: 0 for tp in tps}
        want = {tp: ends[(tp.topic, tp.partition)] for tp in tps}
        deadline = time.monotonic() + 60
        while any(got[tp] < want[tp] for tp in tps):
            assert time.monotonic() < deadline, "could not read the topics back"
            data = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, batch in data.items():
                for m in batch:
                    if m.offset < want[tp]:
                        out.append(Record(m.topic, m.partition, m.offset, m.key, m.value))
                    got[tp] = max(got[tp], m.offset + 1)
    finally:
        await consumer.stop()
    return out


def sink_env(bootstrap: str, db_url: str, prefix: str, writes: bool = True) -> dict[str, str]:
    return {
        **os.environ,
        "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "SITEWATCH_DATABASE_URL": db_url,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_PARTITIONS": str(PARTITIONS),
        "SITEWATCH_SINK_WRITES": "1" if writes else "0",
        "SITEWATCH_LOG_FORMAT": "json",
    }


def start_sink(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([SITEWATCH, "sink", *args], env=env, stdout=out, stderr=out)


async def stored_offsets(engine: AsyncEngine, group: str) -> dict[tuple[str, int], int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(t.offsets.c.topic, t.offsets.c.kafka_partition, t.offsets.c.next_offset)
            .where(t.offsets.c.consumer_group == group)
        )  # fmt: skip
        return {(r.topic, r.kafka_partition): r.next_offset for r in rows}


async def wait_caught_up(
    engine: AsyncEngine, group: str, ends: dict[tuple[str, int], int], limit_s: float = 120
) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            stored = await stored_offsets(engine, group)
        except sa.exc.DBAPIError:
            stored = {}
        if all(stored.get(tp, 0) >= end for tp, end in ends.items()):
            return
        assert time.monotonic() < deadline, f"sink did not catch up: {stored} < {ends}"
        await asyncio.sleep(0.2)


async def run_cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A `sitewatch` command, off the event loop."""
    return await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, timeout=120
    )
