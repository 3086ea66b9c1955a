"""SIGKILL the worker at random points: no transition lost, none extra (issue 2).

The same scripted inputs (20,000 results over 500 sites) go through an uninterrupted
worker and through one killed with SIGKILL ten times and restarted each time. After
dedup by `transition_id`, both must hold exactly the same transitions, byte for byte,
and both must equal what the pure core computes in-process.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from sitewatch.streams import processor as proc_mod
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.state import Config
from sitewatch.streams.topics import TopicNames, partition_of
from tests.kafka_util import RunningBroker, produce, read_all, spawn, stop

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITES = 500
INPUTS = 20_000
PARTITIONS = 4
KILLS = 10
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
    settings = proc_mod.MemoryStore()
    for key, value in sites():
        settings.data[key] = value
    processor = proc_mod.Processor(
        Config(), proc_mod.MemoryStore(), settings, "results", "sites", "test"
    )
    offsets = [0] * PARTITIONS
    out: dict[str, bytes] = {}
    for key, value in rows:
        part = partition_of(key, PARTITIONS)
        msg = proc_mod.Message("results", part, offsets[part], key, value)
        offsets[part] += 1
        for _, tr in processor.process([msg], 0).transitions:
            out[records.transition_decoder.decode(tr).transition_id] = tr
    return out


async def lag(broker: RunningBroker, group: str, topic: str) -> int:
    """Records of `topic` the group has not committed yet (ticks keep adding a few)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        behind = 0
        for tp in tps:
            behind += ends[tp] - (await consumer.committed(tp) or 0)
        return behind
    finally:
        await consumer.stop()


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


async def run_worker(
    broker: RunningBroker, prefix: str, tmp: Path, rows: list[tuple[bytes, bytes]], kills: int
) -> tuple[dict[str, bytes], int]:
    names = TopicNames(prefix)
    await ensure_topics(broker.bootstrap, names, PARTITIONS)
    await produce(broker.bootstrap, names.sites, sites())
    env = env_for(broker, prefix, tmp / f"{prefix}state")
    log = tmp / f"{prefix}worker.log"
    rng = random.Random(11)
    # contiguous slices: a site's inputs stay in order across chunks
    size = len(rows) // (kills + 1) + 1
    chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
    for index, chunk in enumerate(chunks):
        worker = spawn(["worker"], env, log)
        try:
            await produce(broker.bootstrap, names.check_results, chunk)
            if index < len(chunks) - 1:
                await asyncio.sleep(rng.uniform(2.0, 9.0))
                stop(worker, signal.SIGKILL)
            else:
                unique, raw = await collect(broker, prefix, timeout_s=600)
                assert stop(worker) == 0, log.read_text()[-3000:]
                return unique, raw
        finally:
            stop(worker, signal.SIGKILL)  # no-op once stopped; never leave one behind
    raise AssertionError("unreachable")


async def test_worker_sigkill_loses_and_duplicates_no_transition(
    broker: RunningBroker, tmp_path: Path, unique_prefix: str
) -> None:
    rows = script()
    expected = expected_by_core(rows)
    assert len(expected) > 2000
    calm, _ = await run_worker(broker, f"{unique_prefix}calm.", tmp_path, rows, 0)
    crashed, raw = await run_worker(broker, f"{unique_prefix}kill.", tmp_path, rows, KILLS)
    assert calm == expected, "uninterrupted worker differs from the pure core"
    missing = expected.keys() - crashed.keys()
    extra = crashed.keys() - expected.keys()
    assert not missing and not extra, f"missing {len(missing)}, extra {len(extra)}"
    assert crashed == expected
    print(
        f"\ncrash test: {len(expected)} transitions, {raw} records on the topic "
        f"after {KILLS} SIGKILLs ({raw - len(expected)} redelivered duplicates)"
    )
