"""The sink's pipeline (`sink/pipeline.py`): batch N+1 folded while N is written.

Whatever the batch size, a pipelined run leaves the same rows as batches applied one
after the other; a batch whose write fails is applied on its own and the one folded
on top of it is folded again, so nothing built on a rolled-back batch is written.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch.migrations.command import upgrade
from sitewatch.sink.batch import BatchApplier, BatchResult
from sitewatch.sink.db import make_engine
from sitewatch.sink.gate import WriteGate
from sitewatch.sink.pipeline import Pipeline
from sitewatch.streams import records
from sitewatch.streams.message import ConsumedRecord

from . import synthetic
from .conftest import drop_mysql_db, new_mysql_db, snapshot
from .helpers import GROUP, NOW_MS, TOPICS, Log, feed

pytestmark = pytest.mark.integration


def log_with_sites(seed: int, n_sites: int, count: int) -> list[ConsumedRecord]:
    """Transitions of `n_sites` sites, with settings, a tombstone and a site that comes back."""
    log = Log()
    items = list(synthetic.transitions(random.Random(seed), n_sites=n_sites, count=count))
    msgs: list[ConsumedRecord] = [log.transition(x) for x in items]
    msgs.insert(len(msgs) // 3, log.site(records.SiteRecord(site_id=1, url="http://a.test/")))
    msgs.insert(len(msgs) // 2, log.tombstone(2))
    msgs.insert(2 * len(msgs) // 3, log.site(records.SiteRecord(site_id=2, url="http://b/")))
    return msgs


async def run_pipelined(
    engine: AsyncEngine,
    msgs: Sequence[ConsumedRecord],
    batch: int,
    fail_writes: frozenset[int] = frozenset(),
) -> list[int]:
    """Submit `msgs` in batches; the pipelined writes numbered in `fail_writes` fail."""
    gate = WriteGate(engine, True)
    applier = BatchApplier(TOPICS, GROUP)
    sequential_sizes: list[int] = []
    writes = 0
    real_write = applier.write

    async def write(tx: Any, prepared: Any) -> BatchResult:
        nonlocal writes
        writes += 1
        result = await real_write(tx, prepared)
        if writes in fail_writes:  # after its rows went out: the rollback must undo them
            raise sa.exc.OperationalError("COMMIT", {}, Exception("Deadlock found"))
        return result

    applier.write = write  # type: ignore[method-assign]

    async def sequential(part: Sequence[ConsumedRecord]) -> BatchResult:
        sequential_sizes.append(len(part))
        async with gate.transaction() as tx:
            return await applier.apply(tx, part, NOW_MS)

    async def publish(_: BatchResult) -> None:
        pass

    pipeline = Pipeline(gate, applier, sequential=sequential, publish=publish)
    for start in range(0, len(msgs), batch):
        await pipeline.submit(msgs[start : start + batch])
    assert await pipeline.flush()
    return sequential_sizes


async def assert_same_as_sequential(
    engine: AsyncEngine, msgs: Sequence[ConsumedRecord], batch: int
) -> None:
    """The rows of `engine` equal those of the same log fed batch after batch."""
    name, url = new_mysql_db()
    try:
        await upgrade(url)
        other = make_engine(url)
        try:
            await feed(other, msgs, batch=batch)
            assert await snapshot(engine, volatile=False) == await snapshot(other, volatile=False)
        finally:
            await other.dispose()
    finally:
        drop_mysql_db(name)


@pytest.mark.parametrize("batch", [7, 60, 500])
async def test_pipelined_batches_leave_the_rows_of_sequential_ones(
    engine: AsyncEngine, batch: int
) -> None:
    msgs = log_with_sites(5, n_sites=12, count=900)
    assert await run_pipelined(engine, msgs, batch) == []
    await assert_same_as_sequential(engine, msgs, batch)


async def test_a_failed_write_goes_sequential_and_the_next_batch_is_folded_again(
    engine: AsyncEngine,
) -> None:
    msgs = log_with_sites(9, n_sites=6, count=400)
    # the 2nd pipelined write fails: that batch is applied on its own (sequential),
    # and the batch folded on top of it is not written as folded but applied on its own
    sizes = await run_pipelined(engine, msgs, 50, fail_writes=frozenset({2}))
    assert sizes == [50, 50]
    await assert_same_as_sequential(engine, msgs, 50)
