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
  waits for it (`Consumer.wait_empty`) before partitions move. A batch fetched before a
  rebalance began is dropped (its records are read again from the committed offsets),
  and the partitions a rebalance took away are kept for the worker to forget.
- `TableRows` reads a table's partition store directly and writes a batch of rows the
  way Faust's own recovery does (`Store.apply_changelog_batch`): changelog records first
  (sent by the caller with the batch's outputs, confirmed by the broker), then one
  RocksDB write batch per partition and the changelog offset that recovery resumes from
  (`Store.set_persisted_offset`).

These rely on internals of faust-streaming 0.15 (pinned `>=0.15.3,<0.16`);
`tests/streams/test_faust_internals.py` fails if any of them changes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, cast
from weakref import WeakSet

import rocksdict
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify


class InFlight:
    """Stands for a whole fetched batch among Faust's unacknowledged messages, so that a
    rebalance waits for it as for a message (one weak reference, not one per record)."""

    __slots__ = ("__weakref__", "acked", "refcount")

    def __init__(self) -> None:
        self.acked = False
        self.refcount = 1  # what wait_empty prints while it waits


class Fetched(NamedTuple):
    """A fetched batch of the agent's topics: aiokafka's records in fetch order (each has
    `topic`, `partition`, `offset`, `key` and `value`), and their offsets by partition."""

    messages: list[Any]
    offsets: dict[TP, list[int]]
    token: InFlight

    def processed(self) -> Fetched:
        """The batch without its records: what acknowledging it takes, kept while what
        it caused is on the wire (the records of batches in flight were a backlog's
        largest share of the worker's memory)."""
        return self._replace(messages=[])


OnBatch = Callable[[Fetched], Awaitable[None]]

#: Faust keeps each partition store's changelog position under this key
OFFSET_KEY = b"__faust\x00offset__"


class Rebalances:
    """What the batch path must know of rebalances: how many have begun (a batch fetched
    before one began is stale) and which partitions they took away."""

    __slots__ = ("count", "lost", "owned")

    def __init__(self) -> None:
        self.count = 0
        #: partitions assigned by the last rebalance
        self.owned: set[TP] = set()
        #: partitions taken away since `take_lost` was last asked
        self.lost: set[TP] = set()

    def begun(self) -> None:
        self.count += 1

    def assigned(self, assigned: set[TP]) -> None:
        self.lost |= self.owned - assigned
        self.owned = set(assigned)

    def take_lost(self) -> set[TP]:
        """Partitions taken away since the last call, even those given back since:
        another worker may have written their stores meanwhile."""
        lost, self.lost = self.lost, set()
        return lost


class BatchConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """Faust's aiokafka consumer, handing each fetched batch to `on_batch` in one call."""

    on_batch: OnBatch | None = None
    #: the topics whose records go to `on_batch`; the rest (the tables' changelogs, read
    #: during recovery and by standbys) go to Faust's conductor as before
    batch_topics: frozenset[str] = frozenset()
    #: topics never compacted: an offset hole there is refetched, never committed past
    gapless_topics: frozenset[str] = frozenset()
    #: how long a fetch may wait for records (aiokafka's fetch_max_wait_ms)
    fetch_max_wait_ms: int = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rebalances = Rebalances()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.rebalances.begun()
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.rebalances.assigned(assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    def _register(
        self, batch: list[Any], offsets: dict[TP, list[int]], fetched_in: int
    ) -> Fetched | None:
        """The batch as unacknowledged, so that a rebalance waits for it; or None if a
        rebalance began since it was fetched: its partitions may belong to another worker
        by now, and Faust seeks every assigned partition back to its committed offset, so
        its records come again. Between the fetch and this call the loop awaits, and a
        rebalance's `wait_empty` that ran then did not wait for this batch; processing it
        anyway wrote a moved partition's changelog behind its new owner's back."""
        if self.rebalances.count != fetched_in:
            return None
        token = InFlight()
        cast("WeakSet[Any]", self._unacked_messages).add(token)
        return Fetched(batch, offsets, token)

    async def _drop_stale(self) -> None:
        self.log.info("dropped a batch fetched before a rebalance; its records come again")
        if self.flow_active:
            # the rebalance is over and Faust sought to the committed offsets, but the
            # loop may have moved its read offsets past them since: seek again
            await self.perform_seek()

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - a loop
        # Faust's own loop (faust/transport/consumer.py `_drain_messages`), per batch:
        # the same offset bookkeeping, without a task race for every message.
        fetch = self._fetch
        callback = self.callback
        to_message = self._to_message
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        batch_topics = self.batch_topics
        gapless_topics = self.gapless_topics
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                batch: list[Any] = []
                offsets: dict[TP, list[int]] = {}
                fetched_in = self.rebalances.count
                for tp, recs in await fetch(1.0):
                    topic = tp.topic
                    batched = topic in batch_topics
                    taken: list[int] = []
                    for rec in recs:
                        offset = rec.offset
                        r_offset = read_offset[tp]
                        if r_offset is not None and offset < r_offset:
                            continue  # read before (Faust drops these too)
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(topic):
                            if topic in gapless_topics:
                                # Faust would mark the hole committable; in a topic that is
                                # never compacted a hole means records skipped, not gone:
                                # read them again rather than commit past them
                                self.log.warning(
                                    "offset hole in %s[%s]: %s..%s; reading it again",
                                    topic, tp.partition, r_offset + 1, offset - 1,
                                )  # fmt: skip
                                await self.seek(tp, r_offset + 1)
                                break
                            await self._add_gap(tp, r_offset + 1, offset)
                        read_offset[tp] = offset
                        if batched:
                            batch.append(rec)
                            taken.append(offset)
                        else:
                            await callback(to_message(tp, rec))
                    if taken:
                        offsets[tp] = taken
                await self.sleep(0)
                if not batch or self.should_stop:
                    continue
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                # a rebalance waits for it (wait_empty) before partitions move on
                fetched = self._register(batch, offsets, fetched_in)
                if fetched is None:
                    await self._drop_stale()
                    continue
                assert self.on_batch is not None, "BatchConsumer needs on_batch"
                await self.on_batch(fetched)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _fetch(self, wait_s: float) -> list[tuple[TP, list[Any]]]:
        """One fetch as Faust's `getmany` takes it (flow control, active partitions, the
        end offsets its monitor tracks), by partition, with aiokafka's records as they
        are: not wrapped and yielded one at a time. A batch is then taken whole, with no
        await between two of its records, so no rebalance can fall in between."""
        records, active = await self._wait_next_records(wait_s)
        if records is None or self.should_stop:
            return []
        if not self.flow_active:
            await self.perform_seek()  # as getmany does: resume from the committed offsets
            return []
        buffered = self._buffered_partitions
        monitor = self.app.monitor
        out = []
        for tp, recs in records.items():
            if active is None or tp in active or tp in buffered:
                monitor.track_tp_end_offset(tp, self.highwater(tp))
                out.append((tp, recs))
        return out

    def ack_all(self, fetched: Fetched) -> None:
        """Acknowledge a processed batch: Faust commits unbroken runs of acked offsets.

        What `Consumer.ack` does for one message, done for the batch by partition.
        """
        by_tp = fetched.offsets
        acks_enabled_for = self.app.topics.acks_enabled_for
        with ack_lock:
            token = fetched.token
            token.acked = True
            cast("WeakSet[Any]", self._unacked_messages).discard(token)
            for tp, offsets in by_tp.items():
                if not acks_enabled_for(tp.topic):
                    continue
                committed = self._committed_offset[tp]
                index = self._acked_index[tp]
                fresh = [
                    o for o in offsets if (committed is None or o >= committed) and o not in index
                ]
                index.update(fresh)
                self._acked[tp].extend(fresh)
                self._n_acked += len(fresh)
            notify(self._waiting_for_ack)  # a rebalance may wait for this batch


class SeekingConsumer(Protocol):
    """What `seek_assigned_to_committed` needs of an `aiokafka.AIOKafkaConsumer`."""

    def assignment(self) -> set[Any]: ...
    async def committed(self, partition: Any) -> int | None: ...
    def seek(self, partition: Any, offset: int) -> None: ...


async def seek_assigned_to_committed(consumer: SeekingConsumer) -> Mapping[Any, int | None]:
    """Seek every assigned partition to its committed offset, as aiokafka's
    `seek_to_committed()` does, but skipping a partition a rebalance takes away while its
    offset is being asked for: aiokafka's raises IllegalStateError then, and Faust's
    recovery, which calls it after each assignment, lets that crash the worker."""
    committed: dict[Any, int | None] = {}
    for tp in list(consumer.assignment()):
        offset = await consumer.committed(tp)
        if tp not in consumer.assignment():
            continue  # revoked meanwhile: its next owner seeks it
        committed[tp] = offset
        if offset is not None and offset > 0:
            consumer.seek(tp, offset)
    return committed


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    """Faust's consumer thread, with the fetch wait the worker chooses (Faust hard-codes
    1,500 ms: on Tansu an idle fetch answers only after it, a hop of latency) and a seek
    to committed offsets that survives a rebalance falling in the middle of it."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        owner = cast(BatchConsumer, self.consumer)
        consumer._fetch_max_wait_ms = owner.fetch_max_wait_ms  # read at start()
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        # typed as Faust's; an offset is None where nothing is committed, as aiokafka's
        consumer = self._ensure_consumer()
        seek = seek_assigned_to_committed
        return cast("Mapping[TP, int]", await self.call_thread(seek, consumer))


class BatchTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    """The aiokafka transport with `BatchConsumer`: `app.transport = BatchTransport(...)`."""

    Consumer = BatchConsumer


class TableRows:
    """One Faust table as raw rows by partition, written a batch at a time.

    `get` sees the current batch's writes first, then those of batches sent but not yet
    confirmed (newest first), then the store. `take()` hands the batch's rows to the
    caller, who sends them to `changelog` with the batch's outputs; once the broker
    confirmed them, `applied()` writes them to the partition's store in one write batch
    and records the changelog offset that Faust's recovery resumes from. Batches are
    applied in the order they were taken.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        #: key -> (partition, value or None for a delete); a site key has one partition
        self.pending: dict[bytes, tuple[int, bytes | None]] = {}
        #: the rows of batches taken and not yet applied, oldest first
        self.in_flight: deque[dict[bytes, tuple[int, bytes | None]]] = deque()

    @property
    def changelog(self) -> str:
        name: str = self.table.changelog_topic.get_topic_name()
        return name

    def _db(self, partition: int) -> Any:
        return self.table.data._db_for_partition(partition)

    def get(self, partition: int, key: bytes) -> bytes | None:
        hit = self.pending.get(key)
        if hit is None and self.in_flight:
            for rows in reversed(self.in_flight):
                hit = rows.get(key)
                if hit is not None:
                    break
        if hit is not None:
            return hit[1]
        value: bytes | None = self._db(partition).get(key)
        return value

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.pending[key] = (partition, value)

    def take(self) -> dict[int, list[tuple[bytes, bytes | None]]]:
        """The batch's rows by partition, in the order they were first written; they stay
        visible to `get` until `applied()`."""
        rows: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for key, (partition, value) in self.pending.items():
            rows.setdefault(partition, []).append((key, value))
        self.in_flight.append(self.pending)
        self.pending = {}
        return rows

    def applied(
        self, written: Sequence[tuple[int, Sequence[tuple[bytes, bytes | None]], int]]
    ) -> None:
        """The oldest batch taken, confirmed by the changelog: (partition, rows, last
        offset) for each of its partitions, into the local store."""
        for partition, rows, last_offset in written:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in rows:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            self._db(partition).write(batch)
            self.table.data.set_persisted_offset(TP(self.changelog, partition), last_offset)
        self.in_flight.popleft()

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every stored row of one partition (not the pending ones)."""
        for key, value in self._db(partition).items():
            if key != OFFSET_KEY:
                yield key, value
