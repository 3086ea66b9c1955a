"""Faust fed a batch at a time: the two per-event paths of faust-streaming the worker replaces.

Faust hands every fetched message to its conductor through one awaited race of tasks
(`wait_first`, ~40 µs a message) and writes a table one key at a time through a bounded
producer buffer; together they held the worker near 3,000 results/s on a broker that
moves 30,000 (notes/faust-internals.md). The worker keeps everything else of Faust: the
app, the agent that owns the input topics, the tables and their changelog topics, the
consumer group, the assignor, table recovery on assignment, standbys and the commits
of acknowledged offsets. Two pieces change:

- `BatchConsumer` hands each fetched batch of the agent's topics to one callback (the
  agent's queue; changelog records still go to Faust's conductor, for recovery), keeping
  Faust's read offsets, gap records (compacted `sites` has holes in its offsets), count
  commits and flow control, and tracks the batch as unacknowledged so that a rebalance
  waits for it (`Consumer.wait_empty`) before partitions move.
- `TableRows` reads a table's partition store directly and writes a batch of rows the
  way Faust's own recovery does: changelog records first (sent by the caller with the
  batch's outputs, confirmed by the broker), then `Store.apply_changelog_batch`, which
  writes RocksDB in one write batch per partition and records the changelog offset that
  recovery resumes from.

These rely on internals of faust-streaming 0.15 (pinned `>=0.15.3,<0.16`);
`tests/streams/test_faust_internals.py` fails if any of them changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, NamedTuple, cast
from weakref import WeakSet

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

#: what a batch callback receives: Faust's consumer messages, in fetch order
OnBatch = Callable[[list[Any]], Awaitable[None]]

#: Faust keeps each partition store's changelog position under this key
OFFSET_KEY = b"__faust\x00offset__"


class BatchConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """Faust's aiokafka consumer, handing each fetched batch to `on_batch` in one call."""

    on_batch: OnBatch | None = None
    #: the topics whose records go to `on_batch`; the rest (the tables' changelogs, read
    #: during recovery and by standbys) go to Faust's conductor as before
    batch_topics: frozenset[str] = frozenset()

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - a loop
        # Faust's own loop (faust/transport/consumer.py `_drain_messages`), per batch:
        # the same offset bookkeeping, without a task race for every message.
        getmany = self.getmany
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        batch_topics = self.batch_topics
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                batch: list[Any] = []
                async for tp, message in getmany(timeout=1.0):
                    offset = message.offset
                    r_offset = read_offset[tp]
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        read_offset[tp] = offset
                        if message.topic in batch_topics:
                            batch.append(message)
                        else:
                            await callback(message)
                await self.sleep(0)
                if not batch or self.should_stop:
                    continue
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                # a rebalance waits for these (wait_empty) before partitions move on
                unacked = cast("WeakSet[Any]", self._unacked_messages)
                unacked.update(batch)
                assert self.on_batch is not None, "BatchConsumer needs on_batch"
                await self.on_batch(batch)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    def ack_all(self, messages: Sequence[Any]) -> None:
        """Acknowledge a processed batch: Faust commits unbroken runs of acked offsets."""
        ack = self.ack
        for message in messages:
            ack(message)

    def forget(self, messages: Sequence[Any]) -> None:
        """Drop messages that will not be processed here (their partition moved)."""
        cast("WeakSet[Any]", self._unacked_messages).difference_update(messages)


class BatchTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    """The aiokafka transport with `BatchConsumer`: `app.transport = BatchTransport(...)`."""

    Consumer = BatchConsumer


class _Row(NamedTuple):
    """A changelog record as `Store.apply_changelog_batch` reads it (event.message.*)."""

    tp: TP
    partition: int
    offset: int
    key: bytes
    value: bytes | None


class _Written(NamedTuple):
    message: _Row


class TableRows:
    """One Faust table as raw rows by partition, written a batch at a time.

    `get` sees the batch's own pending writes first. `take()` hands the pending rows to
    the caller, who sends them to `changelog` with the batch's outputs; once the broker
    confirmed them, `applied()` writes them to the local store.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.pending: dict[tuple[int, bytes], bytes | None] = {}

    @property
    def changelog(self) -> str:
        name: str = self.table.changelog_topic.get_topic_name()
        return name

    def _db(self, partition: int) -> Any:
        return self.table.data._db_for_partition(partition)

    def get(self, partition: int, key: bytes) -> bytes | None:
        pending = self.pending
        if pending:
            hit = pending.get((partition, key), self)
            if hit is not self:
                return cast("bytes | None", hit)
        value: bytes | None = self._db(partition).get(key)
        return value

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.pending[(partition, key)] = value

    def take(self) -> dict[tuple[int, bytes], bytes | None]:
        rows, self.pending = self.pending, {}
        return rows

    def applied(self, written: Sequence[tuple[int, bytes, bytes | None, int]]) -> None:
        """Rows the changelog confirmed, as (partition, key, value, changelog offset)."""
        if not written:
            return
        topic = self.changelog
        self.table.data.apply_changelog_batch(
            [_Written(_Row(TP(topic, p), p, off, key, value)) for p, key, value, off in written],
            to_key=None,
            to_value=None,
        )

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every stored row of one partition (not the pending ones)."""
        for key, value in self._db(partition).items():
            if key != OFFSET_KEY:
                yield key, value
