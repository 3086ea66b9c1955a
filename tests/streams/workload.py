"""The scripted workload of the worker crash and fail-over tests, and how to check it.

20,000 results over 500 flapping sites (some TLS), in time order; what the pure core
makes of them partition by partition; and how to wait for a worker (or a group of them)
to have committed its input before reading `site-events` back.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.message import Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.state import Config
from sitewatch.streams.stores import MemoryStore
from sitewatch.streams.topics import partition_of
from tests.kafka_util import RunningBroker, read_all

SITES = 500
INPUTS = 20_000
PARTITIONS = 4
BASE = timefmt.to_ms("2026-11-26T00:00:00.000Z")


def script(seed: int = 7) -> list[tuple[bytes, bytes]]:
    """Flapping sites: runs of failures and successes, some TLS results."""
    rng = random.Random(seed)
    rows: list[tuple[bytes, bytes]] = []
    failing = {s: rng.random() < 0.3 for s in range(1, SITES + 1)}
    for i in range(INPUTS):
        site_id = rng.randint(1, SITES)
        if rng.random() < 0.15:
            failing[site_id] = not failing[site_id]
        check = CheckType.HTTP
        tls = None
        if rng.random() < 0.05:
            check = CheckType.TLS_EXPIRY
            tls = timefmt.from_ms(BASE + i * 100 + rng.choice([3, 20, 60]) * 86_400_000)
        rec = records.CheckResult(
            result_id=f"r{i}",
            site_id=site_id,
            check_type=check,
            ok=not failing[site_id] or check is CheckType.TLS_EXPIRY,
            observed_at=timefmt.from_ms(BASE + i * 100),
            tls_not_after=tls,
            probe="p",
        )
        rows.append((records.site_key(site_id), records.encode(rec)))
    return rows


def sites() -> list[tuple[bytes, bytes]]:
    return [
        (
            records.site_key(s),
            records.encode(
                records.SiteRecord(site_id=s, url=f"http://s{s}.test/", num_of_checks=2)
            ),
        )
        for s in range(1, SITES + 1)
    ]


def env_for(broker: RunningBroker, prefix: str, state: Path) -> dict[str, str]:
    return {
        "SITEWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_STATE_DIR": str(state),
        "SITEWATCH_PARTITIONS": str(PARTITIONS),
    }


def expected_by_core(rows: list[tuple[bytes, bytes]]) -> dict[str, bytes]:
    """What the pure core yields, partition by partition as Kafka orders it."""
    site_records = MemoryStore()
    for key, value in sites():
        site_records.data[key] = value
    processor = Processor(
        Config(), MemoryStore(), site_records, MemoryStore(), "results", "sites", "test"
    )
    offsets = [0] * PARTITIONS
    out: dict[str, bytes] = {}
    for key, value in rows:
        part = partition_of(key, PARTITIONS)
        msg = Record("results", part, offsets[part], key, value)
        offsets[part] += 1
        for _, tr in processor.process([msg], 0).transitions:
            out[records.transition_decoder.decode(tr).transition_id] = tr
    return out


async def _offsets(broker: RunningBroker, group: str, topic: str) -> tuple[int, int]:
    """(committed by the group, end) of `topic`, summed over its partitions."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        done = 0
        for tp in tps:
            done += await consumer.committed(tp) or 0
        return done, sum(ends.values())
    finally:
        await consumer.stop()


async def committed(broker: RunningBroker, group: str, topic: str) -> int:
    """Records of `topic` the group has committed."""
    return (await _offsets(broker, group, topic))[0]


async def lag(broker: RunningBroker, group: str, topic: str) -> int:
    """Records of `topic` the group has not committed yet (ticks keep adding a few)."""
    done, end = await _offsets(broker, group, topic)
    return end - done


async def collect(
    broker: RunningBroker, prefix: str, timeout_s: float
) -> tuple[dict[str, bytes], int]:
    """Wait until the worker has committed (nearly) all its input, then read site-events.

    Waiting on the worker's own progress, not on a count, tells a slow machine apart
    from a lost transition.
    """
    deadline = time.monotonic() + timeout_s
    caught_up = 0
    while caught_up < 3:
        assert time.monotonic() < deadline, "the worker did not catch up with its input"
        await asyncio.sleep(2)
        behind = await lag(broker, f"{prefix}worker", f"{prefix}check-results")
        caught_up = caught_up + 1 if behind <= 2 * PARTITIONS else 0
    rows = await read_all(broker.bootstrap, f"{prefix}site-events", idle_s=2.0, timeout_s=60)
    unique: dict[str, bytes] = {}
    for _, value, _, _ in rows:
        assert value is not None
        tid = records.transition_decoder.decode(value).transition_id
        assert unique.setdefault(tid, value) == value, "same id, different bytes"
    return unique, len(rows)
