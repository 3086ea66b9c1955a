"""The sink's consumer: `site-events` and `sites` into the database, one transaction per batch.

Exactly-once effect without Kafka transactions (ADR 3): the consumer offsets live in
`sitewatch_offsets`, written in the same transaction as the data, and on every partition
assignment the consumer seeks to them. A batch is therefore either wholly in the
database with its offsets or not at all; a replayed transition is a no-op (unique
transition_id). Losing the database means retrying the same batch with back-off.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch import metrics
from sitewatch.clock import now_ms
from sitewatch.retry import backoff
from sitewatch.settings import Settings
from sitewatch.streams import broker
from sitewatch.streams.deadletter import send_dead_letter
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.message import ConsumedRecord
from sitewatch.streams.topics import Topic, TopicNames

from . import dberrors, offsets
from . import tables as t
from .batch import BatchApplier, BatchResult
from .db import make_engine
from .dberrors import DbFailure
from .gate import WriteGate
from .pipeline import Pipeline

log = structlog.get_logger(__name__)


def _retryable(exc: BaseException) -> bool:
    return dberrors.classify(exc) is DbFailure.TRANSIENT


class Sink:
    """The consumer group `<prefix>sink`: `run()` until `stop()`; `process()` one batch."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        max_batch: int = 10_000,
        session_timeout_ms: int | None = None,
    ) -> None:
        self.settings = settings
        self.topics = TopicNames(settings.topic_prefix)
        self.group = f"{settings.topic_prefix}sink"
        self.engine = engine or make_engine(settings.db_url)
        self.gate = WriteGate(self.engine, settings.sink_writes)
        self.applier = BatchApplier(self.topics, self.group, settings.secret_box)
        self.max_batch = max_batch
        self.session_timeout_ms = session_timeout_ms
        self.totals: Counter[str] = Counter()
        self.producer: AIOKafkaProducer | None = None
        self._stop = asyncio.Event()
        self.fatal: BaseException | None = None

    def stop(self) -> None:
        self._stop.set()

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[None]]) -> None:
        """Back-off: 0.2 s doubling to 10 s, for as long as the database is away."""

        def on_retry(exc: BaseException, _seconds: float) -> None:
            metrics.SINK_RETRIES.inc()
            log.warning(
                "database unavailable, retrying", what=what, error=dberrors.describe(exc)[:300]
            )

        async for retry in backoff(
            first_s=0.2, max_s=10.0, retry_if=_retryable, on_retry=on_retry, stop=self._stop
        ):
            with retry:
                await attempt()

    async def stored_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        found: dict[TopicPartition, int] = {}

        async def read() -> None:
            found.clear()
            async with self.gate.transaction() as tx:
                rows = await tx.read(offsets.select(self.group))
            wanted = set(tps)
            for row in rows:
                tp = TopicPartition(row.topic, row.kafka_partition)
                if tp in wanted:
                    found[tp] = row.next_offset

        await self._retrying("load offsets", read)
        return found

    async def process(self, messages: Sequence[ConsumedRecord]) -> BatchResult:
        """Apply one batch; retried whole until it commits, split if the database refuses it.

        A refusal that is not transient (a constraint, the closed-event trigger, JSON
        nested too deep...: a case the checks before the database missed) would fail
        forever; applying the messages in halves isolates the refused one, which is
        dead-lettered with the database's error while the others are applied, in order.
        """
        try:
            return await self._process(messages)
        except Exception as exc:
            if dberrors.classify(exc) is not DbFailure.REFUSED or self._stop.is_set():
                raise  # e.g. schema missing: stop rather than dead-letter everything
            if len(messages) == 1:
                return await self._refuse(messages[0], exc)
            log.error(
                "database refused a batch, splitting it",
                error=dberrors.describe(exc)[:300],
                messages=len(messages),
            )
            # halves, in order: log2(n) extra transactions find the refused record
            half = len(messages) // 2
            merged = BatchResult()
            for part in (messages[:half], messages[half:]):
                merged.counts.update((await self.process(part)).counts)
            return merged

    async def _refuse(self, msg: ConsumedRecord, exc: BaseException) -> BatchResult:
        outcome: list[BatchResult] = []

        async def once() -> None:
            outcome.clear()
            async with self.gate.transaction() as tx:
                result = await self.applier.refuse(
                    tx,
                    msg,
                    f"refused by the database: {dberrors.describe(exc)}",
                    now_ms(),
                )
                await self._dead_letters(result)
            outcome.append(result)

        await self._retrying("dead-letter a refused record", once)
        self.totals.update(outcome[0].counts)
        return outcome[0]

    async def _process(self, messages: Sequence[ConsumedRecord]) -> BatchResult:
        outcome: list[BatchResult] = []

        async def once() -> None:
            outcome.clear()
            async with self.gate.transaction() as tx:
                result = await self.applier.apply(tx, messages, now_ms())
                # dead letters go out before the commit: a crash in between re-sends them
                # (at least once), it never loses one
                await self._dead_letters(result)
                committing = time.perf_counter()
            if self.gate.writes:  # leaving the block committed the transaction
                metrics.SINK_COMMIT_SECONDS.observe(time.perf_counter() - committing)
            outcome.append(result)

        await self._retrying("write batch", once)
        result = outcome[0]
        self.totals.update(result.counts)
        if not self.gate.writes:
            log.info("shadow mode: would write", **dict(result.counts))
        return result

    def pipeline(self) -> Pipeline | None:
        """Batches folded while the one before is written; shadow mode stays sequential."""
        if not self.gate.writes:
            return None
        return Pipeline(
            self.gate,
            self.applier,
            sequential=self.process,
            publish=self._dead_letters,
            done=lambda result: self.totals.update(result.counts),
        )

    async def _dead_letters(self, result: BatchResult) -> None:
        for letter, key in result.dead_letters:
            if not self.gate.writes:
                log.warning("shadow mode: would dead-letter", error=letter.error)
            elif self.producer is None:  # never commit past a record we could not park
                raise RuntimeError("no producer for dead letters")
            else:
                await send_dead_letter(self.producer, letter, key)

    async def check_schema(self) -> None:
        """Fail at start, clearly, if the tables are missing (waits for the database)."""
        try:
            await self.stored_offsets([])
        except sa.exc.DBAPIError as exc:
            raise SchemaMissing(
                f"cannot read {t.offsets.name} ({exc.orig}); run `sitewatch migrate` first"
            ) from exc

    async def run(self) -> None:
        await self.check_schema()
        s = self.settings = await broker.resolve_flavor(self.settings)
        await ensure_topics(
            s.bootstrap_servers, self.topics, s.partitions, topics=[Topic.SITES, Topic.SITE_EVENTS]
        )
        consumer = broker.group_consumer(
            s,
            self.group,
            session_ms=self.session_timeout_ms,
            max_poll_records=self.max_batch,
            # Tansu answers a waiting fetch only at its end, even when records arrive:
            # aiokafka's 500 ms would be a hop of P5's latency (Kafka answers at once)
            fetch_max_wait_ms=100,
        )  # offsets live in the database: never committed to the broker
        served = await metrics.start(
            s,
            metrics.Process.SINK,
            [metrics.sink_stats(self.totals, self.gate.writes)],
            metrics.consumer_lag(lambda: consumer),
        )
        self.producer = broker.producer(s.bootstrap_servers)
        await self.producer.start()
        consumer.subscribe(
            [self.topics.site_events, self.topics.sites], listener=_SeekToStored(self, consumer)
        )
        await consumer.start()
        log.info("sink started", group=self.group, writes=self.gate.writes)
        pipeline = self.pipeline()
        last_report = time.monotonic()
        try:
            while not self._stop.is_set():
                data = await consumer.getmany(timeout_ms=500, max_records=self.max_batch)
                if self.fatal is not None:  # raised in the rebalance listener
                    raise self.fatal
                messages: list[ConsumedRecord] = [m for batch in data.values() for m in batch]  # type: ignore[misc]
                if messages and pipeline is not None:
                    await pipeline.submit(messages)  # observes the batch when it commits
                elif messages:
                    started = time.perf_counter()
                    await self.process(messages)
                    metrics.observe_batch(
                        metrics.SINK_BATCH_RECORDS,
                        metrics.SINK_BATCH_SECONDS,
                        len(messages),
                        started,
                    )
                elif pipeline is not None:
                    await pipeline.flush()  # idle: nothing folded is left unwritten
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    log.info("sink progress", **dict(self.totals))
            if pipeline is not None:
                await pipeline.flush()
        finally:
            if served is not None:
                await served.close()
            await consumer.stop()
            await self.producer.stop()
            await self.engine.dispose()
            log.info("sink stopped", **dict(self.totals))


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the offsets committed with the data."""

    def __init__(self, sink: Sink, consumer: AIOKafkaConsumer) -> None:
        self.sink = sink
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass  # nothing pending: a batch commits its offsets with its data

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            stored = await self.sink.stored_offsets(list(assigned))
        except Exception as exc:
            # aiokafka only logs a listener's exception; consuming from anywhere but the
            # stored offsets would break exactly-once, so stop and surface it instead
            self.sink.fatal = exc
            self.sink.stop()
            for tp in assigned:
                self.consumer.pause(tp)
            return
        fresh = [tp for tp in assigned if tp not in stored]
        for tp, offset in stored.items():
            self.consumer.seek(tp, offset)
        if fresh:
            await self.consumer.seek_to_beginning(*fresh)
        log.info("partitions assigned", stored=len(stored), from_beginning=len(fresh))


class SchemaMissing(RuntimeError):
    """The sink's tables are not there."""
