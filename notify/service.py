"""`sitewatch notify`: signed webhooks for promotions to down and recoveries from down.

Two loops share one database:

- **decide** consumes `site-events`. For each promotion to `down` (`verifier_confirmed`)
  and each close of a `down` event it records a decision (notify, muted in maintenance,
  cooldown, ...) and one `pending` delivery per matching subscription, in the same
  transaction as the consumer offsets (`sitewatch_offsets`, group `<prefix>notify`).
  A crash re-reads from the stored offsets; decisions are keyed by `transition_id`,
  so nothing is decided twice and nothing is lost.
- **deliver** sends due deliveries. An attempt is recorded (attempts+1, next retry time)
  and committed *before* the request goes out, then marked `sent` or left for its
  retry; after the last retry it is `failed`. A SIGKILL between the send and the `sent`
  mark re-sends the same bytes with the same `X-Sitewatch-Delivery` id at the retry
  time: the one at-least-once case, which receivers dedup by that id.

Maintenance uses `SiteConfig.in_maintenance`, the event path's own check, with the
settings the sink materialized in `jetpack_monitor_sites`; the cooldown
(`alert_cooldown_minutes`) is measured in stream time (the transitions' `at`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import msgspec
import sqlalchemy as sa
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sitewatch import metrics
from sitewatch.settings import Settings
from sitewatch.sink import tables as sink_tables
from sitewatch.sink.db import make_engine
from sitewatch.streams import lifecycle, records, timefmt
from sitewatch.streams.broker import resolve_flavor
from sitewatch.streams.enums import EventState, Reason
from sitewatch.streams.kafka_admin import ensure_topics, partitions_of
from sitewatch.streams.state import SiteConfig
from sitewatch.streams.topics import Topic, TopicNames

from . import signing
from . import tables as t

log = structlog.get_logger(__name__)

#: seconds after the first attempt fails: 1 min, 5 min, 30 min, 1 h, 6 h, then give up
RETRY_DELAYS_S: Final = (60, 300, 1800, 3600, 21_600)
MAX_IN_FLIGHT: Final = 16
POLL_S: Final = 0.5


class Kind(enum.StrEnum):
    DOWN = "down"
    RECOVERY = "recovery"


class Decision(enum.StrEnum):
    NOTIFY = "notify"
    MUTED_MAINTENANCE = "muted_maintenance"
    COOLDOWN = "cooldown"
    #: a recovery whose down alert was not sent (cooldown or maintenance)
    NO_DOWN_ALERT = "no_down_alert"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


EVENT_TYPE: Final = {Kind.DOWN: "site.down", Kind.RECOVERY: "site.recovered"}


def kind_of(tr: records.Transition) -> Kind | None:
    """Which transitions notify: promotion to down, and any close of a down event."""
    if tr.reason is Reason.VERIFIER_CONFIRMED and tr.state_after is EventState.DOWN:
        return Kind.DOWN
    if tr.reason.closes and tr.state_before is EventState.DOWN:
        return Kind.RECOVERY
    return None


def delivery_id(subscription_id: int, transition_id: str) -> str:
    return lifecycle._uuid5(f"delivery|{subscription_id}|{transition_id}")


def delivery_body(did: str, kind: Kind, tr: records.Transition) -> bytes:
    body = {
        "delivery_id": did,
        "type": EVENT_TYPE[kind],
        "site_id": tr.site_id,
        "event_id": tr.event_id,
        "transition": msgspec.to_builtins(tr),
    }
    return msgspec.json.encode(body, order="deterministic")


def retry_delay_s(attempts: int, scale: float) -> float | None:
    """Delay before attempt `attempts + 1`, None after the last one (give up)."""
    if attempts < 1 or attempts > len(RETRY_DELAYS_S):
        return None
    return RETRY_DELAYS_S[attempts - 1] * scale


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def site_config(row: Any) -> SiteConfig:
    """The settings row the sink materialized, as the core's own SiteConfig."""
    windows = [
        records.MaintenanceWindow(start=w["start"], end=w["end"]) for w in (row.maintenance or [])
    ]
    rec = records.SiteRecord(site_id=row.site_id, url=row.url or "unknown:", maintenance=windows)
    return SiteConfig.from_record(rec)


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
        self.scale = settings.notify_retry_scale
        self.timeout_s = settings.notify_timeout_s
        self._stop = asyncio.Event()
        self._due = asyncio.Event()
        self._in_flight: set[str] = set()
        self._consumer: AIOKafkaConsumer | None = None
        #: decision -> how many were made
        self.counts: dict[str, int] = {}
        #: transitions read from site-events, and those already decided (redelivered)
        self.read = 0
        self.redelivered = 0

    def stop(self) -> None:
        self._stop.set()
        self._due.set()

    # -- decide ------------------------------------------------------------------------

    async def _start_offsets(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        o = sink_tables.offsets
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                sa.select(o.c.topic, o.c.kafka_partition, o.c.next_offset).where(
                    o.c.consumer_group == self.group
                )
            )
            stored = {TopicPartition(r.topic, r.kafka_partition): r.next_offset for r in rows}
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

    async def _store_offsets(
        self, conn: AsyncConnection, offsets: dict[TopicPartition, int]
    ) -> None:
        o = sink_tables.offsets
        for tp, nxt in offsets.items():
            updated = await conn.execute(
                sa.update(o)
                .where(
                    o.c.consumer_group == self.group,
                    o.c.topic == tp.topic,
                    o.c.kafka_partition == tp.partition,
                )
                .values(next_offset=nxt)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    sa.insert(o).values(
                        consumer_group=self.group,
                        topic=tp.topic,
                        kafka_partition=tp.partition,
                        next_offset=nxt,
                    )
                )

    async def decide_batch(self, batch: dict[TopicPartition, Sequence[Any]]) -> int:
        """One transaction: decisions, pending deliveries, offsets. Returns deliveries."""
        relevant: list[tuple[Kind, records.Transition]] = []
        offsets: dict[TopicPartition, int] = {}
        self.read += sum(len(msgs) for msgs in batch.values())
        for tp, msgs in batch.items():
            for m in msgs:
                offsets[tp] = m.offset + 1
                try:
                    tr = records.transition_decoder.decode(m.value or b"")
                except (records.DecodeError, records.ValidationError):
                    continue  # not ours to dead-letter: the sink does that
                kind = kind_of(tr)
                if kind is not None:
                    relevant.append((kind, tr))
        created = 0
        async with self.engine.begin() as conn:
            if relevant:
                created = await self._decide(conn, relevant)
            await self._store_offsets(conn, offsets)
        if created:
            self._due.set()
        return created

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
            decision = await self._decision(conn, kind, tr, at, sites.get(tr.site_id))
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
            if decision is not Decision.NOTIFY:
                continue
            due = timefmt.to_datetime(now_ms())
            for sub in subs:
                if sub.site_id is not None and sub.site_id != tr.site_id:
                    continue
                did = delivery_id(sub.id, tr.transition_id)
                await conn.execute(
                    sa.insert(t.deliveries).values(
                        id=did,
                        subscription_id=sub.id,
                        transition_id=tr.transition_id,
                        site_id=tr.site_id,
                        kind=kind.value,
                        state=DeliveryState.PENDING.value,
                        attempts=0,
                        next_attempt_at=due,
                        body=delivery_body(did, kind, tr).decode(),
                    )
                )
                created += 1
        return created

    async def _decision(
        self, conn: AsyncConnection, kind: Kind, tr: records.Transition, at: int, row: Any
    ) -> Decision:
        a = t.alerts
        cooldown_ms = (row.alert_cooldown_minutes if row is not None else 30) * 60_000
        if row is not None and site_config(row).in_maintenance(at):
            return Decision.MUTED_MAINTENANCE
        if kind is Kind.RECOVERY:
            down = await conn.scalar(
                sa.select(a.c.decision).where(
                    a.c.event_id == tr.event_id, a.c.kind == Kind.DOWN.value
                )
            )
            if down is not None and down != Decision.NOTIFY.value:
                return Decision.NO_DOWN_ALERT
            return Decision.NOTIFY
        last = await conn.scalar(
            sa.select(sa.func.max(a.c.at)).where(
                a.c.site_id == tr.site_id,
                a.c.kind == Kind.DOWN.value,
                a.c.decision == Decision.NOTIFY.value,
                a.c.at <= timefmt.to_datetime(at),
            )
        )
        if last is not None and at - timefmt.to_ms(timefmt.from_datetime(_utc(last))) < cooldown_ms:
            return Decision.COOLDOWN
        return Decision.NOTIFY

    async def consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
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

    # -- deliver -----------------------------------------------------------------------

    async def deliver_loop(self) -> None:
        sem = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stop.is_set():
                self._due.clear()
                for row in await self._due_rows():
                    if row.id in self._in_flight:
                        continue
                    if not await self._claim(row):
                        continue  # another notifier took it
                    self._in_flight.add(row.id)
                    await sem.acquire()
                    task = asyncio.create_task(self._send(session, row, sem))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                with contextlib.suppress(TimeoutError):  # woken early when work is due
                    await asyncio.wait_for(self._due.wait(), POLL_S)
            if tasks:  # a clean stop lets requests in flight finish and be recorded
                await asyncio.wait(tasks, timeout=self.timeout_s + 1)

    async def _due_rows(self) -> list[Any]:
        d, s = t.deliveries, t.subscriptions
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(d.c.id, d.c.attempts, d.c.body, d.c.kind, s.c.url, s.c.secret)
                .join(s, s.c.id == d.c.subscription_id)
                .where(
                    d.c.state == DeliveryState.PENDING.value,
                    d.c.next_attempt_at <= timefmt.to_datetime(now_ms()),
                )
                .order_by(d.c.next_attempt_at, d.c.id)
                .limit(200)
            )
            return list(rows)

    async def _claim(self, row: Any) -> bool:
        """Record the attempt before sending it: attempts+1 and when to retry."""
        d = t.deliveries
        delay = retry_delay_s(row.attempts + 1, self.scale)
        # a retry never starts while this attempt may still be in flight
        wait_ms = int(max(delay if delay is not None else 0.0, self.timeout_s + 1) * 1000)
        now = now_ms()
        async with self.engine.begin() as conn:
            res = await conn.execute(
                sa.update(d)
                .where(
                    d.c.id == row.id,
                    d.c.attempts == row.attempts,
                    d.c.state == DeliveryState.PENDING.value,
                )
                .values(
                    attempts=row.attempts + 1,
                    last_attempt_at=timefmt.to_datetime(now),
                    next_attempt_at=timefmt.to_datetime(now + wait_ms),
                )
            )
            return bool(res.rowcount == 1)

    async def _send(self, session: aiohttp.ClientSession, row: Any, sem: asyncio.Semaphore) -> None:
        attempt = row.attempts + 1
        status: int | None = None
        error: str | None = None
        try:
            body = row.body.encode()
            headers = {
                "Content-Type": "application/json",
                signing.SIGNATURE_HEADER: signing.sign(row.secret, body),
                signing.DELIVERY_HEADER: row.id,
                signing.EVENT_HEADER: EVENT_TYPE[Kind(row.kind)],
            }
            started = time.perf_counter()
            try:
                async with session.post(row.url, data=body, headers=headers) as resp:
                    status = resp.status
                    await resp.read()
                    if not 200 <= status < 300:
                        error = f"HTTP {status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:1000]
            metrics.DELIVERY_SECONDS.observe(time.perf_counter() - started)
            await self._record(row.id, attempt, status, error)
        except Exception:
            log.exception("delivery bookkeeping failed; retried at its next attempt", id=row.id)
        finally:
            self._in_flight.discard(row.id)
            sem.release()

    async def _record(self, did: str, attempt: int, status: int | None, error: str | None) -> None:
        d = t.deliveries
        now = now_ms()
        values: dict[str, Any] = {"last_status": status, "last_error": error}
        if error is None:
            values.update(state=DeliveryState.SENT.value, sent_at=timefmt.to_datetime(now))
            values["next_attempt_at"] = None
            outcome = metrics.DeliveryOutcome.SENT
        else:
            delay = retry_delay_s(attempt, self.scale)
            if delay is None:
                values.update(state=DeliveryState.FAILED.value, next_attempt_at=None)
                outcome = metrics.DeliveryOutcome.GAVE_UP
                log.warning("webhook delivery gave up", id=did, attempts=attempt, error=error)
            else:
                outcome = metrics.DeliveryOutcome.RETRY
                values["next_attempt_at"] = timefmt.to_datetime(now + int(delay * 1000))
                log.info(
                    "webhook delivery failed, will retry", id=did, attempt=attempt, error=error
                )
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(d).where(d.c.id == did, d.c.attempts == attempt).values(**values)
            )
        metrics.DELIVERIES.labels(outcome.value).inc()
        if error is None:
            log.info("webhook delivered", id=did, attempt=attempt, status=status)
        else:
            self._due.set()

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
        self.settings = await resolve_flavor(self.settings)
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
        tasks = [
            asyncio.create_task(self.consume(), name="consume"),
            asyncio.create_task(self.deliver_loop(), name="deliver"),
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
            await self.engine.dispose()
            if served is not None:
                await served.close()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)  # DATETIME(3) columns hold naive UTC


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="a notifier with no stored position starts at the oldest transition "
        "(default: the newest)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def main() -> int:
        notifier = Notifier(settings, from_beginning=args.from_beginning)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, notifier.stop)
        return await notifier.run()

    return asyncio.run(main())
