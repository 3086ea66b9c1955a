"""The notifier process: consume `site-events`, decide, deliver (docs/notify.md).

Two loops share one database:

- **decide** (here) consumes `site-events`. For each promotion to `down` and each close
  of a `down` event it records a decision (`decide.decide`) and one `pending` delivery
  per matching subscription (`deliver.queue`), in the same transaction as the consumer
  offsets (`sitewatch_offsets`, group `<prefix>notify`). A crash re-reads from the stored
  offsets; decisions are keyed by `transition_id`, so nothing is decided twice and
  nothing is lost.
- **deliver** (`deliver.Deliverer`) sends due deliveries.

Maintenance uses the settings the sink materialized in `jetpack_monitor_sites`; the
cooldown is measured in stream time (the transitions' `at`). A record that does not
decode is dead-lettered; a database error is waited out with back-off (or, when the
schema is missing, stops the notifier).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sitewatch import metrics
from sitewatch.clock import now_ms
from sitewatch.settings import Settings
from sitewatch.sink import dberrors, offsets
from sitewatch.sink import tables as sink_tables
from sitewatch.sink.db import make_engine
from sitewatch.sink.dberrors import DbFailure
from sitewatch.sink.offsets import Offsets
from sitewatch.streams import broker, deadletter, records, timefmt
from sitewatch.streams.kafka_admin import ensure_topics, partitions_of
from sitewatch.streams.message import ConsumedRecord
from sitewatch.streams.topics import Topic, TopicNames

from . import deliver
from . import tables as t
from .db_backoff import db_backoff
from .decide import Decision, Kind, Prior, decide, kind_of, site_rules

log = structlog.get_logger(__name__)

#: a polled record, and its transition (None: dead-lettered)
Item = tuple[ConsumedRecord, records.Transition | None]


class Notifier:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        from_beginning: bool = False,
    ) -> None:
        self.settings = settings
        self.topics = TopicNames(settings.topic_prefix)
        self.group = f"{settings.topic_prefix}notify"
        self.engine = engine or make_engine(settings.db_url)
        self.from_beginning = from_beginning
        self._stop = asyncio.Event()
        self.deliverer = deliver.Deliverer(settings, self.engine, self._stop)
        self.producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        #: decision -> how many were made
        self.counts: dict[str, int] = {}
        #: transitions read from site-events, and those already decided (redelivered)
        self.read = 0
        self.redelivered = 0

    def stop(self) -> None:
        self.deliverer.stop()  # sets the shared stop event too

    # -- position ----------------------------------------------------------------------

    async def _start_offsets(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        async with self.engine.begin() as conn:
            stored = await offsets.load(conn, self.group)
            missing = [tp for tp in tps if tp not in stored]
            if missing:
                # A new notifier starts at the end (or the beginning if asked) and stores
                # that position at once, so a crash before its first batch loses nothing.
                if self.from_beginning:
                    start = await consumer.beginning_offsets(missing)
                else:
                    start = await consumer.end_offsets(missing)
                for tp in missing:
                    stored[tp] = start[tp]
                await self._store_offsets(conn, {tp: stored[tp] for tp in missing})
        return stored

    async def _store_offsets(self, conn: AsyncConnection, stored: Offsets) -> None:
        await offsets.store(conn, self.group, stored)

    # -- decide ------------------------------------------------------------------------

    async def decide_batch(self, batch: Mapping[TopicPartition, Sequence[ConsumedRecord]]) -> int:
        """Decide a polled batch (retried through transient database errors); returns
        the deliveries created. Poison records are dead-lettered, not decided."""
        items: list[Item] = []
        self.read += sum(len(msgs) for msgs in batch.values())
        for msgs in batch.values():
            for m in msgs:
                try:
                    items.append((m, records.keyed_transition(m.key, m.value)))
                except Exception as exc:  # any failure to decode is poison, even RecursionError
                    await self._dead_letter(m, _why(exc))
                    items.append((m, None))
        created = 0
        async for attempt in db_backoff("decide", self._stop):
            with attempt:
                created = await self._decide_split(items)
        if created:
            self.deliverer.wake()
        return created

    async def _decide_split(self, items: Sequence[Item]) -> int:
        """One transaction for `items`; if the database refuses it (a case the wire limits
        missed), halves, until the refused record is alone and dead-lettered."""
        try:
            return await self._decide_once(items)
        except Exception as exc:
            if dberrors.classify(exc) is not DbFailure.REFUSED:
                raise
            if len(items) == 1:
                msg = items[0][0]
                await self._dead_letter(msg, f"refused by the database: {dberrors.describe(exc)}")
                async with self.engine.begin() as conn:
                    await self._store_offsets(conn, _offsets_of([msg]))
                return 0
            half = len(items) // 2
            return await self._decide_split(items[:half]) + await self._decide_split(items[half:])

    async def _decide_once(self, items: Sequence[Item]) -> int:
        """One transaction: decisions, pending deliveries, offsets."""
        relevant: list[tuple[Kind, records.Transition]] = []
        for _, tr in items:
            kind = kind_of(tr) if tr is not None else None
            if kind is not None and tr is not None:
                relevant.append((kind, tr))
        created = 0
        async with self.engine.begin() as conn:
            if relevant:
                created = await self._decide(conn, relevant)
            await self._store_offsets(conn, _offsets_of([m for m, _ in items]))
        return created

    async def _dead_letter(self, msg: ConsumedRecord, error: str) -> None:
        """Published before the offsets move past it; a send that fails is logged."""
        letter = deadletter.dead_letter_for(msg, error, self.group, now_ms())
        self.counts["dead_letters"] = self.counts.get("dead_letters", 0) + 1
        if self.producer is None:
            deadletter.log_dead_letter(letter)
            return
        await deadletter.send_dead_letter(self.producer, letter, msg.key)

    async def _decide(
        self, conn: AsyncConnection, relevant: list[tuple[Kind, records.Transition]]
    ) -> int:
        a, s = t.alerts, sink_tables.sites
        ids = [tr.transition_id for _, tr in relevant]
        seen = {
            r[0]
            for r in await conn.execute(
                sa.select(a.c.transition_id).where(a.c.transition_id.in_(ids))
            )
        }
        site_ids = sorted({tr.site_id for _, tr in relevant})
        rows = await conn.execute(
            sa.select(s.c.site_id, s.c.url, s.c.maintenance, s.c.alert_cooldown_minutes).where(
                s.c.site_id.in_(site_ids)
            )
        )
        sites = {r.site_id: r for r in rows}
        subs = list(
            await conn.execute(
                sa.select(t.subscriptions.c.id, t.subscriptions.c.site_id).order_by(
                    t.subscriptions.c.id
                )
            )
        )
        created = 0
        for kind, tr in relevant:
            if tr.transition_id in seen:
                self.redelivered += 1
                continue  # decided before a crash or redelivered: never twice
            seen.add(tr.transition_id)
            at = timefmt.to_ms(tr.at)
            rules = site_rules(sites.get(tr.site_id))
            decision = decide(kind, at, rules, await _prior(conn, kind, tr, at))
            await conn.execute(
                sa.insert(a).values(
                    transition_id=tr.transition_id,
                    event_id=tr.event_id,
                    site_id=tr.site_id,
                    kind=kind.value,
                    decision=decision.value,
                    at=timefmt.to_datetime(at),
                )
            )
            self.counts[decision.value] = self.counts.get(decision.value, 0) + 1
            log.info(
                "notification decided",
                site_id=tr.site_id,
                kind=kind.value,
                decision=decision.value,
                transition_id=tr.transition_id,
            )
            if decision is Decision.NOTIFY:
                created += await deliver.queue(conn, subs, kind, tr)
        return created

    # -- consume -----------------------------------------------------------------------

    async def consume(self) -> None:
        consumer = broker.reader(self.settings.bootstrap_servers)
        await consumer.start()
        self._consumer = consumer
        try:
            parts = await partitions_of(self.settings.bootstrap_servers, self.topics.site_events)
            tps = [TopicPartition(self.topics.site_events, p) for p in sorted(parts)]
            consumer.assign(tps)
            for tp, offset in (await self._start_offsets(consumer, tps)).items():
                consumer.seek(tp, offset)
            log.info("notifier consuming", topic=self.topics.site_events, partitions=len(tps))
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                if batch:
                    await self.decide_batch(batch)
        finally:
            self._consumer = None
            await consumer.stop()

    async def _consume_retrying(self) -> None:
        """`consume`, started again (from the stored offsets) after a database error."""
        async for attempt in db_backoff("start consuming", self._stop):
            with attempt:
                if self._stop.is_set():
                    return
                await self.consume()

    # -- run -----------------------------------------------------------------------------

    def stats_collector(self) -> metrics.StatsCollector:
        """The notifier's own counters, read at scrape time."""
        return metrics.StatsCollector(
            [
                metrics.Stat(
                    "sitewatch_notifier_transitions_total",
                    "Transitions read from site-events",
                    lambda: float(self.read),
                ),
                metrics.Stat(
                    "sitewatch_notifier_redeliveries_total",
                    "Transitions read again that were already decided: no-ops",
                    lambda: float(self.redelivered),
                ),
                metrics.Stat(
                    "sitewatch_notifier_decisions_total",
                    "Notification decisions (downs and recoveries) by decision",
                    lambda: {d.value: float(self.counts.get(d.value, 0)) for d in Decision},
                    label="decision",
                ),
            ]
        )

    async def run(self) -> int:
        self.settings = await broker.resolve_flavor(self.settings)
        await ensure_topics(
            self.settings.bootstrap_servers,
            self.topics,
            self.settings.partitions,
            topics=[Topic.SITE_EVENTS],
        )
        served = await metrics.start(
            self.settings,
            metrics.Process.NOTIFIER,
            [self.stats_collector()],
            metrics.consumer_lag(lambda: self._consumer),
        )
        self.producer = broker.producer(self.settings.bootstrap_servers)
        await self.producer.start()
        tasks = [
            asyncio.create_task(self._consume_retrying(), name="consume"),
            asyncio.create_task(self.deliverer.run(), name="deliver"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    self.stop()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    raise task.exception()  # type: ignore[misc]
            return 0
        finally:
            self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.producer.stop()
            await self.engine.dispose()
            if served is not None:
                await served.close()


async def _prior(conn: AsyncConnection, kind: Kind, tr: records.Transition, at: int) -> Prior:
    """What the rule for `kind` looks at, from the decisions stored so far (this
    transaction's included)."""
    a = t.alerts
    if kind is Kind.RECOVERY:
        down = await conn.scalar(
            sa.select(a.c.decision).where(a.c.event_id == tr.event_id, a.c.kind == Kind.DOWN.value)
        )
        return Prior(down_decision=down)
    last = await conn.scalar(
        sa.select(sa.func.max(a.c.at)).where(
            a.c.site_id == tr.site_id,
            a.c.kind == Kind.DOWN.value,
            a.c.decision == Decision.NOTIFY.value,
            a.c.at <= timefmt.to_datetime(at),
        )
    )
    if last is None:
        return Prior()
    return Prior(last_notified_down_ms=timefmt.to_ms(timefmt.from_datetime(_utc(last))))


def _offsets_of(msgs: Sequence[ConsumedRecord]) -> dict[tuple[str, int], int]:
    past: dict[tuple[str, int], int] = {}
    offsets.advance(past, msgs)
    return past


def _why(exc: BaseException) -> str:
    text = str(exc)
    return text if isinstance(exc, ValueError) and text else f"{type(exc).__name__}: {text}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)  # DATETIME(3) columns hold naive UTC
