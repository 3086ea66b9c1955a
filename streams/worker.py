"""The Faust app that runs the lifecycle over `check-results` (`sitewatch worker`,
started by `sitewatch.commands.worker`).

A thin shell around `Processor`. Faust owns the consumer group, the assignment, the
state tables (RocksDB locally, changelog topics in Kafka) and their recovery, and the
commits. The agent of the input topics is fed a whole fetched batch at a time
(`faust_batching.BatchConsumer`) and writes each touched site once per batch
(`faust_batching.TableRows`). `Worker` holds the named steps: assign, handle a batch,
tick, report.

Delivery is at-least-once with an exactly-once effect (ADR 4, ADR 6): a batch's
outputs and changelog records are confirmed by the broker before its state reaches the
local store and before any of its offsets is acknowledged, so nothing is committed whose
effects are not durable. On Apache Kafka the changelog records are sent only once the
outputs are confirmed, so no recovered state is ahead of its outputs; on Tansu they go
together and the outbox covers the batches in flight. The core re-emits what a
redelivered input produced, and downstream dedups by `transition_id`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import faust
import rocksdict
import structlog
from aiokafka import AIOKafkaProducer
from faust.stores.rocksdb import RocksDBOptions

from sitewatch import gcpolicy, metrics
from sitewatch.clock import now_ms
from sitewatch.settings import Settings

from . import broker, records, timefmt
from .faust_batching import BatchConsumer, BatchTransport, Fetched, TableRows
from .flights import Flight, land, send_changelog, send_letter
from .message import ConsumedRecord
from .processor import Processor
from .state import Config
from .topics import TopicNames

log = structlog.get_logger(__name__)

#: at most this many fetched records per batch (aiokafka's max_poll_records)
BATCH_MAX = 4000
#: the agent's queue of fetched batches: fetching goes on while one is processed
QUEUED_BATCHES = 2
#: batches sent and not yet confirmed by the broker
IN_FLIGHT = 4

#: RocksDB per table partition. Faust's defaults (64 MiB memtables, 3 of them, and a 2 GiB
#: block cache, for each partition's store) keep a fleet's whole table in memory: rows
#: of a million sites never leave the memtables. Small memtables flush them to disk
#: (the page cache serves reads); the worker keeps recent sites' rows anyway (Processor).
ROCKSDB: dict[str, int] = {
    "write_buffer_size": 1024 * 1024,
    "max_write_buffer_number": 2,
}
#: one block cache for all the worker's partition stores (not one per store: a worker
#: with 32 of them kept 32 caches filling up)
BLOCK_CACHE_BYTES = 4 * 1024 * 1024
#: and one budget for all their memtables: past it the store written to flushes
MEMTABLE_BYTES = 4 * 1024 * 1024


class SharedRocksDB(RocksDBOptions):
    """Faust's RocksDB options of a table's partition stores, with the block cache and
    the memtable budget of the worker's `StoreMemory` (Faust gives each store its own)."""

    def __init__(self, memory: StoreMemory, **options: Any) -> None:
        super().__init__(**options)
        self.memory = memory

    def as_options(self) -> rocksdict.Options:
        options: rocksdict.Options = super().as_options()
        table = rocksdict.BlockBasedOptions()  # Faust's, but for the cache
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        table.set_block_cache(self.memory.cache)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(self.memory.memtables)
        return options


class StoreMemory:
    """What all the partition stores of a worker's tables share."""

    def __init__(self) -> None:
        self.cache = rocksdict.Cache(BLOCK_CACHE_BYTES)
        self.memtables = rocksdict.WriteBufferManager(MEMTABLE_BYTES, allow_stall=False)

    def share(self, table: Any) -> None:
        """Before any of its partitions opens: the table's stores use this memory."""
        store = table.data
        store.rocksdb_options = SharedRocksDB(
            self, **store.options, use_rocksdict=store.rocksdb_options.use_rocksdict
        )


_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


class RowStore:
    """A `TableRows` behind the processor's store protocols (the message names the
    partition)."""

    def __init__(self, rows: TableRows) -> None:
        self.rows = rows

    def get(self, key: bytes, msg: ConsumedRecord) -> bytes | None:
        return self.rows.get(msg.partition, key)

    def put(self, key: bytes, value: bytes, msg: ConsumedRecord) -> None:
        self.rows.put(msg.partition, key, value)

    def delete(self, key: bytes, msg: ConsumedRecord) -> None:
        self.rows.put(msg.partition, key, None)  # a tombstone on the changelog


class Worker:
    """The lifecycle agent's shell around one Faust app."""

    def __init__(self, conf: Settings, partitions: int) -> None:
        self.conf = conf
        self.names = names = TopicNames(conf.topic_prefix)
        self.partitions = partitions
        self.app = app = faust.App(
            f"{conf.topic_prefix}worker",
            broker=[f"kafka://{hp}" for hp in conf.bootstrap_servers],
            store="rocksdb://",
            datadir=str(Path(conf.state_dir) / "worker"),
            topic_partitions=partitions,
            consumer_auto_offset_reset="earliest",
            web_enabled=False,
            broker_commit_interval=1.0,
            broker_max_poll_records=BATCH_MAX,
            **self._broker_options(),
        )
        app.transport = BatchTransport(app.conf.broker_consumer, app)
        # One agent over both topics: a site's settings and results share a partition
        # number, so it sees both in order per topic and never waits on the other.
        self.inputs = app.topic(names.check_results, names.sites, partitions=partitions, **_RAW)
        # key/value `bytes`: the raw codec; the processor encodes state itself. Parked
        # results have their own table: the driver's, not the core's state
        self.state_rows, self.site_rows, self.parked_rows = (
            TableRows(
                app.Table(
                    name, partitions=partitions, key_type=bytes, value_type=bytes, options=ROCKSDB
                )
            )
            for name in ("site-state", "site-settings", "site-parked")
        )
        self.tables = (self.state_rows, self.site_rows, self.parked_rows)
        self.store_memory = StoreMemory()
        for rows in self.tables:
            self.store_memory.share(rows.table)
        #: outputs confirmed before the changelog rows are sent (not on Tansu: see
        #: complete_batch)
        self.outputs_first = not conf.is_tansu
        self.processor = Processor(
            Config(verifiers=conf.verifier_names, auto_timeout_ms=conf.auto_timeout_s * 1000),
            RowStore(self.state_rows),
            RowStore(self.site_rows),
            RowStore(self.parked_rows),
            results_topic=names.check_results,
            sites_topic=names.sites,
            consumer=f"{conf.topic_prefix}worker",
        )
        self.queue: asyncio.Queue[Fetched] = asyncio.Queue(QUEUED_BATCHES)
        self.producer: AIOKafkaProducer | None = None
        #: input partitions whose timers are indexed
        self.indexed: set[int] = set()
        #: partition -> (stream time, monotonic seconds when it was seen): the tick anchor
        self.anchors: dict[int, tuple[int, float]] = {}
        consumer = app.consumer
        assert isinstance(consumer, BatchConsumer)
        consumer.on_batch = self.queue.put
        consumer.batch_topics = frozenset({names.check_results, names.sites})
        consumer.gapless_topics = frozenset({names.check_results})
        self.consumer = consumer
        app.agent(self.inputs, name="lifecycle")(self._agent)
        app.timer(interval=conf.tick_interval_s)(self.tick)
        app.timer(interval=10.0)(self.report)

    def _broker_options(self) -> dict[str, Any]:
        group = broker.group_timeouts(self.conf)
        opts: dict[str, Any] = {
            "broker_session_timeout": group["session_timeout_ms"] / 1000,
            "broker_heartbeat_interval": group["heartbeat_interval_ms"] / 1000,
        }
        if self.conf.is_tansu:
            # Tansu under-reports a changelog's end offset when its last batch holds
            # several records, so a RocksDB store ahead of it looks corrupt to Faust;
            # the local store is authoritative there (keep SITEWATCH_STATE_DIR).
            opts["recovery_consistency_check"] = False
        return opts

    def _new_producer(self) -> AIOKafkaProducer:
        # acks=all, no idempotence (Tansu cannot); on Tansu no lingering either: its
        # end offsets are wrong for multi-record batches (docs/contract.md, broker facts)
        linger = 0 if self.conf.is_tansu else 5
        return broker.producer(
            self.conf.bootstrap_servers,
            acks="all",
            linger_ms=linger,
            max_batch_size=256 * 1024,
        )

    # -- the agent -------------------------------------------------------------------

    async def _agent(self, stream: Any) -> None:
        """The agent of the input topics; its records arrive through `self.queue`.

        Two stages: this one processes a batch and sends what it caused; `_completer`
        waits for the broker's confirmations, batch by batch in order, then writes the
        local store and acknowledges. The next batch is processed while the previous
        ones are on the wire (at most `IN_FLIGHT`).
        """
        del stream  # fed by BatchConsumer a batch at a time, not event by event
        gcpolicy.settle()  # Faust and the app are built: keep them out of the collector
        gcpolicy.bounded_heap()  # a backlog's memory goes back once it is through
        self.producer = producer = self._new_producer()
        await producer.start()
        flights: asyncio.Queue[Flight] = asyncio.Queue(IN_FLIGHT)
        completer = asyncio.create_task(self._completer(flights))
        try:
            while True:
                try:
                    # no reference to the records left here once processed: while the
                    # flights are full, this waits holding only what was sent
                    flight = await self.send_batch(await self.queue.get())
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._fail(exc)
                    raise
                await flights.put(flight)
        finally:
            completer.cancel()
            await asyncio.gather(completer, return_exceptions=True)
            self.producer = None
            await producer.stop()

    async def _completer(self, flights: asyncio.Queue[Flight]) -> None:
        while True:
            flight = await flights.get()
            try:
                await self.complete_batch(flight)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._fail(exc)
                raise

    async def _fail(self, exc: BaseException) -> None:
        # a failing agent must stop the worker (and so be restarted), not idle
        log.exception("agent failed; stopping the worker", exc_info=exc)
        await self.app.crash(exc)

    # -- steps -----------------------------------------------------------------------

    def assign(self) -> None:
        """After a rebalance, forget what the processor holds of partitions taken away
        (even if given back since: another worker may have written them meanwhile) and
        index the timers and parked results of those now assigned (their tables are
        recovered by then: Faust resumes fetching only after recovery)."""
        results = self.names.check_results
        assigned = {tp.partition for tp in self.consumer.assignment() if tp.topic == results}
        lost = {tp.partition for tp in self.consumer.rebalances.take_lost() if tp.topic == results}
        revoked = (self.indexed - assigned) | (self.indexed & lost)
        if assigned == self.indexed and not revoked:
            return
        self.processor.forget_partitions(revoked)
        for part in revoked:
            self.anchors.pop(part, None)
        new = assigned - (self.indexed - revoked)
        parts = sorted(new)
        self.processor.rebuild_deadlines(
            ((key, part, value) for part in parts for key, value in self.state_rows.items(part)),
            ((key, part, value) for part in parts for key, value in self.parked_rows.items(part)),
        )
        self.indexed = assigned
        log.info(
            "timer index rebuilt",
            partitions=sorted(assigned),
            pending=len(self.processor.deadlines),
        )

    async def send_batch(self, fetched: Fetched) -> Flight:
        """Process one fetched batch and send all it caused: changelog rows, transitions,
        verify requests, dead letters. Nothing is awaited but the sends' queueing."""
        started = time.perf_counter()
        self.assign()
        out = self.processor.process(fetched.messages, now_ms())
        producer = self.producer
        assert producer is not None
        # the rows stay visible to later batches (TableRows' overlay) until applied
        rows = [(t, t.take()) for t in self.tables]
        flight = Flight(fetched.processed(), len(fetched.messages), started, rows)
        if not self.outputs_first:
            await send_changelog(producer, flight)
        send = producer.send
        for key, value in out.transitions:
            flight.outputs.append(await send(self.names.site_events, value, key=key))
        for key, value in out.verify_requests:
            flight.outputs.append(await send(self.names.verify_requests, value, key=key))
        flight.letters = [
            await send_letter(producer, self.names.dead_letter(letter.topic), key, letter)
            for key, letter in out.dead_letters
        ]
        mono = time.monotonic()
        anchors = self.anchors
        for part, stream_ms in self.processor.stream_time.items():
            if part not in anchors or anchors[part][0] != stream_ms:
                anchors[part] = (stream_ms, mono)
        return flight

    async def complete_batch(self, flight: Flight) -> None:
        """Once the broker confirmed all a batch sent: the local store, then the
        acknowledgement, so Faust commits nothing whose effects are not durable. Batches
        complete in order.

        On Apache Kafka the changelog rows are sent only once the outputs are confirmed:
        the changelog then never holds a state whose outputs could be lost, however wide
        the redelivery window. Tansu stalls on that order (a produce answered
        NOT_LEADER_FOR_PARTITION until it times out, about one run in five of the crash
        test's uninterrupted worker), so there the rows go out with the outputs and the
        outbox covers the window (ADR 6)."""
        assert self.producer is not None
        await land(self.producer, flight, self.outputs_first)
        self.consumer.ack_all(flight.fetched)
        metrics.observe_batch(
            metrics.WORKER_BATCH_RECORDS,
            metrics.WORKER_BATCH_SECONDS,
            flight.size,
            flight.started,
        )

    async def tick(self) -> None:
        """Stream clock: one tick per owned partition, anchored on its stream time."""
        producer = self.producer
        if producer is None:
            return
        mono = time.monotonic()
        for tp in self.consumer.assignment():
            if tp.topic != self.names.check_results or tp.partition not in self.anchors:
                continue
            stream_ms, seen = self.anchors[tp.partition]
            at = stream_ms + int((mono - seen) * 1000)
            rec = records.Tick(
                tick_id=uuid.uuid4().hex, partition=tp.partition, at=timefmt.from_ms(at)
            )
            await producer.send(
                self.names.check_results, records.encode(rec), partition=tp.partition
            )

    async def report(self) -> None:
        gcpolicy.tidy()
        stats = dataclasses.asdict(self.processor.stats)
        log.info("worker stats", **stats, pending_timers=len(self.processor.deadlines))

    def input_lag(self) -> metrics.LagReader:
        """Lag of the worker's inputs: end offset minus committed offset per owned
        partition (Faust's monitor keeps what it committed; a partition with nothing
        committed since its assignment is read from the consumer's position)."""
        app = self.app
        inputs = {self.names.check_results, self.names.sites}

        async def read() -> list[tuple[str, int, int]]:
            tps = sorted(tp for tp in app.consumer.assignment() if tp.topic in inputs)
            if not tps:
                return []
            ends = await app.consumer.highwaters(*tps)
            committed = app.monitor.tp_committed_offsets
            out = []
            for tp in tps:
                done = committed.get(tp)
                if done is None:
                    done = await app.consumer.position(tp)
                if ends.get(tp) is not None and done is not None:
                    out.append((tp.topic, tp.partition, max(0, ends[tp] - done)))
            return out

        return read
