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

A webhook URL is not trusted: requests go through the probes' address guard (the same
`SITEWATCH_PROBE_ALLOW_PRIVATE` switch), follow no redirect (a 3xx is a failed
attempt), read at most `MAX_RESPONSE_BYTES` of an answer and keep at most
`MAX_PER_SUBSCRIPTION` requests in flight per subscription, so dead endpoints cannot
starve healthy ones. A record that does not decode is dead-lettered; a database error
is waited out with back-off (or, when the schema is missing, stops the notifier).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import signal
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import msgspec
import sqlalchemy as sa
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sitewatch import metrics
from sitewatch.clock import now_ms
from sitewatch.crypto import SecretError, open_secret
from sitewatch.probes.connector import GuardedConnector
from sitewatch.settings import Settings
from sitewatch.sink import dberrors, offsets
from sitewatch.sink import tables as sink_tables
from sitewatch.sink.db import make_engine
from sitewatch.sink.dberrors import DbFailure
from sitewatch.sink.offsets import Offsets
from sitewatch.streams import deadletter, records, timefmt
from sitewatch.streams.broker import resolve_flavor
from sitewatch.streams.enums import EventState, Reason
from sitewatch.streams.ids import delivery_id_for
from sitewatch.streams.kafka_admin import ensure_topics, partitions_of
from sitewatch.streams.state import SiteConfig
from sitewatch.streams.topics import Topic, TopicNames

from . import signing
from . import tables as t

log = structlog.get_logger(__name__)

#: seconds after the first attempt fails: 1 min, 5 min, 30 min, 1 h, 6 h, then give up
RETRY_DELAYS_S: Final = (60, 300, 1800, 3600, 21_600)
MAX_IN_FLIGHT: Final = 16
#: requests in flight per subscription: a slow or dead endpoint holds no more slots
MAX_PER_SUBSCRIPTION: Final = 2
#: bytes of a webhook's answer read (and discarded): only its status matters
MAX_RESPONSE_BYTES: Final = 4096
POLL_S: Final = 0.5
#: back-off after a database error: doubling from the first to the last
DB_BACKOFF_S: Final = (0.5, 30.0)


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


def site_config(row: Any) -> SiteConfig | None:
    """The settings row the sink materialized, as the core's own SiteConfig (None if it
    does not make one: then there are no windows, as for a site not written yet)."""
    try:
        raw = {
            "site_id": row.site_id,
            "url": row.url or "unknown:",
            "maintenance": row.maintenance or [],
        }
        return SiteConfig.from_record(msgspec.convert(raw, records.SiteRecord))
    except Exception as exc:
        log.error("stored site settings unusable", site_id=row.site_id, error=str(exc)[:300])
        return None


class _Backoff:
    """Doubling waits after database errors, reset by a success."""

    def __init__(self) -> None:
        self.delay = DB_BACKOFF_S[0]

    def ok(self) -> None:
        self.delay = DB_BACKOFF_S[0]

    async def wait(self, what: str, exc: BaseException, stop: asyncio.Event) -> None:
        """Log, then sleep (cut short by a stop); re-raise what no waiting can fix."""
        kind = dberrors.classify(exc)
        if kind is DbFailure.FATAL:
            raise exc
        log.warning(
            "database error, backing off",
            what=what,
            kind=kind.value,
            seconds=self.delay,
            error=dberrors.describe(exc)[:300],
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.delay)
        self.delay = min(self.delay * 2, DB_BACKOFF_S[1])


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
        #: subscription id -> requests in flight
        self._per_subscription: Counter[int] = Counter()
        self.producer: AIOKafkaProducer | None = None
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

    async def decide_batch(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> int:
        """Decide a polled batch (retried through transient database errors); returns
        the deliveries created. Poison records are dead-lettered, not decided."""
        items: list[tuple[Any, records.Transition | None]] = []
        self.read += sum(len(msgs) for msgs in batch.values())
        for msgs in batch.values():
            for m in msgs:
                try:
                    items.append((m, records.keyed_transition(m.key, m.value)))
                except Exception as exc:  # any failure to decode is poison, even RecursionError
                    await self._dead_letter(m, _why(exc))
                    items.append((m, None))
        backoff = _Backoff()
        while True:
            try:
                created = await self._decide_split(items)
                break
            except Exception as exc:
                if self._stop.is_set():
                    raise
                await backoff.wait("decide", exc, self._stop)
        if created:
            self._due.set()
        return created

    async def _decide_split(self, items: Sequence[tuple[Any, records.Transition | None]]) -> int:
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

    async def _decide_once(self, items: Sequence[tuple[Any, records.Transition | None]]) -> int:
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

    async def _dead_letter(self, msg: Any, error: str) -> None:
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
                did = delivery_id_for(sub.id, tr.transition_id)
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
        config = site_config(row) if row is not None else None
        if config is not None and config.in_maintenance(at):
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

    async def _consume_retrying(self) -> None:
        """`consume`, started again (from the stored offsets) after a database error."""
        backoff = _Backoff()
        while not self._stop.is_set():
            try:
                await self.consume()
                return
            except Exception as exc:
                if self._stop.is_set():
                    raise
                await backoff.wait("start consuming", exc, self._stop)

    # -- deliver -----------------------------------------------------------------------

    async def deliver_loop(self) -> None:
        sem = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = GuardedConnector(
            allow_private=self.settings.probe_allow_private,
            force_close=True,  # nothing kept open to a host we do not trust
            limit=MAX_IN_FLIGHT,
        )
        backoff = _Backoff()
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # no proxy from the environment: the guard sees the target
        ) as session:
            while not self._stop.is_set():
                self._due.clear()
                try:
                    for row in await self._due_rows():
                        if (
                            row.id in self._in_flight
                            or self._per_subscription[row.subscription_id] >= MAX_PER_SUBSCRIPTION
                        ):
                            continue
                        if not await self._claim(row):
                            continue  # another notifier took it
                        self._in_flight.add(row.id)
                        self._per_subscription[row.subscription_id] += 1
                        await sem.acquire()
                        task = asyncio.create_task(self._send(session, row, sem))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    backoff.ok()
                except Exception as exc:
                    await backoff.wait("deliver", exc, self._stop)
                    continue
                with contextlib.suppress(TimeoutError):  # woken early when work is due
                    await asyncio.wait_for(self._due.wait(), POLL_S)
            if tasks:  # a clean stop lets requests in flight finish and be recorded
                await asyncio.wait(tasks, timeout=self.timeout_s + 1)

    async def _due_rows(self) -> list[Any]:
        """Due deliveries, at most `MAX_PER_SUBSCRIPTION` per subscription: a backlog for
        one endpoint never hides another's deliveries."""
        d, s = t.deliveries, t.subscriptions
        rank = (
            sa.func.row_number()
            .over(partition_by=d.c.subscription_id, order_by=(d.c.next_attempt_at, d.c.id))
            .label("rank")
        )
        due = (
            sa.select(
                d.c.id, d.c.subscription_id, d.c.attempts, d.c.kind, d.c.next_attempt_at, rank
            )
            .where(
                d.c.state == DeliveryState.PENDING.value,
                d.c.next_attempt_at <= timefmt.to_datetime(now_ms()),
            )
            .subquery()
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(
                    due.c.id,
                    due.c.subscription_id,
                    due.c.attempts,
                    due.c.kind,
                    d.c.body,
                    s.c.url,
                    s.c.secret,
                )
                .join(d, d.c.id == due.c.id)
                .join(s, s.c.id == due.c.subscription_id)
                .where(due.c.rank <= MAX_PER_SUBSCRIPTION)
                .order_by(due.c.next_attempt_at, due.c.id)
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
        try:
            status, error = await self._post(session, row)
            await self._record(row.id, attempt, status, error)
        except Exception:
            log.exception("delivery bookkeeping failed; retried at its next attempt", id=row.id)
        finally:
            self._in_flight.discard(row.id)
            self._per_subscription[row.subscription_id] -= 1
            if self._per_subscription[row.subscription_id] <= 0:
                del self._per_subscription[row.subscription_id]
            sem.release()

    async def _post(
        self, session: aiohttp.ClientSession, row: Any
    ) -> tuple[int | None, str | None]:
        """One attempt: (status, error); error None means delivered."""
        try:
            secret = open_secret(self.settings.secret_box, row.secret)
        except SecretError as exc:
            return None, f"cannot sign: {exc}"
        body = row.body.encode()
        headers = {
            "Content-Type": "application/json",
            signing.SIGNATURE_HEADER: signing.sign(secret, body),
            signing.DELIVERY_HEADER: row.id,
            signing.EVENT_HEADER: EVENT_TYPE[Kind(row.kind)],
        }
        started = time.perf_counter()
        try:
            async with session.post(
                row.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                await resp.content.read(MAX_RESPONSE_BYTES)  # the rest is never read
        except Exception as exc:  # refused, timed out, blocked target, bad URL...
            return None, f"{type(exc).__name__}: {exc}"[:1000]
        finally:
            metrics.DELIVERY_SECONDS.observe(time.perf_counter() - started)
        if 300 <= status < 400:
            return status, f"HTTP {status}: redirects are not followed"
        if not 200 <= status < 300:
            return status, f"HTTP {status}"
        return status, None

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
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers)
        await self.producer.start()
        tasks = [
            asyncio.create_task(self._consume_retrying(), name="consume"),
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
            await self.producer.stop()
            await self.engine.dispose()
            if served is not None:
                await served.close()


def _offsets_of(msgs: Sequence[Any]) -> dict[tuple[str, int], int]:
    past: dict[tuple[str, int], int] = {}
    offsets.advance(past, msgs)
    return past


def _why(exc: BaseException) -> str:
    text = str(exc)
    return text if isinstance(exc, ValueError) and text else f"{type(exc).__name__}: {text}"


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
