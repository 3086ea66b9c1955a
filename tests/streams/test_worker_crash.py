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
from collections import Counter
from pathlib import Path

import pytest

from sitewatch.streams import records
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames, partition_of
from tests.kafka_util import RunningBroker, produce, spawn, stop
from tests.streams.workload import PARTITIONS, collect, env_for, expected_by_core, script, sites

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 10


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


def describe(
    expected: dict[str, bytes], got: dict[str, bytes], missing: set[str], extra: set[str]
) -> str:
    """Where the difference lies: by partition, and the first site's story both ways."""

    def site_of(raw: bytes) -> int:
        return records.transition_decoder.decode(raw).site_id

    parts = Counter(
        partition_of(records.site_key(site_of(expected[t])), PARTITIONS) for t in missing
    )
    sites = sorted({site_of(expected[t]) for t in missing} | {site_of(got[t]) for t in extra})
    story = ""
    if sites:

        def lines(pool: dict[str, bytes]) -> list[str]:
            trs = [records.transition_decoder.decode(v) for v in pool.values()]
            return [
                f"{t.at} {t.seq} {t.reason.value}"
                for t in sorted(trs, key=lambda t: t.at)
                if t.site_id == sites[0]
            ]

        story = f"; site {sites[0]} expected {lines(expected)} got {lines(got)}"
    return f"missing by partition {dict(parts)}, {len(sites)} sites{story}"


@pytest.mark.parametrize("which", ["broker", pytest.param("tansu", marks=pytest.mark.smoke)])
async def test_worker_sigkill_loses_and_duplicates_no_transition(
    which: str, request: pytest.FixtureRequest, tmp_path: Path, unique_prefix: str
) -> None:
    """On Apache Kafka, and on the bundled Tansu broker with the flavor detected."""
    broker: RunningBroker = request.getfixturevalue(which)
    rows = script()
    expected = expected_by_core(rows)
    assert len(expected) > 2000
    calm, _ = await run_worker(broker, f"{unique_prefix}calm.", tmp_path, rows, 0)
    crashed, raw = await run_worker(broker, f"{unique_prefix}kill.", tmp_path, rows, KILLS)
    assert calm == expected, "uninterrupted worker differs from the pure core"
    missing = expected.keys() - crashed.keys()
    extra = crashed.keys() - expected.keys()
    assert not missing and not extra, f"missing {len(missing)}, extra {len(extra)}: " + describe(
        expected, crashed, missing, extra
    )
    assert crashed == expected
    print(
        f"\ncrash test: {len(expected)} transitions, {raw} records on the topic "
        f"after {KILLS} SIGKILLs ({raw - len(expected)} redelivered duplicates)"
    )
