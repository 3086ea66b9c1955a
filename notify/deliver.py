"""Delivering the webhooks the notifier decided on: claim, send, record, retry.

An attempt is recorded (attempts+1, next retry time) and committed *before* the request
goes out, then marked `sent` or left for its retry; after the last retry it is `failed`.
A SIGKILL between the send and the `sent` mark re-sends the same bytes with the same
`X-Sitewatch-Delivery` id at the retry time: the one at-least-once case, which receivers
dedup by that id (docs/notify.md, Nothing lost).

A webhook URL is not trusted: requests go through the probes' address guard (the same
`SITEWATCH_PROBE_ALLOW_PRIVATE` switch), follow no redirect (a 3xx is a failed
attempt), read at most `MAX_RESPONSE_BYTES` of an answer and keep at most
`MAX_PER_SUBSCRIPTION` requests in flight per subscription, so dead endpoints cannot
starve healthy ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sitewatch import metrics
from sitewatch.clock import now_ms
from sitewatch.crypto import SecretError, open_secret
from sitewatch.probes.connector import GuardedConnector
from sitewatch.settings import Settings
from sitewatch.sink import dberrors
from sitewatch.sink.dberrors import DbFailure
from sitewatch.streams import records, timefmt
from sitewatch.streams.ids import delivery_id_for

from . import signing
from . import tables as t
from .db_backoff import db_backoff, log_wait
from .decide import EVENT_TYPE, Kind

log = structlog.get_logger(__name__)

#: seconds after the first attempt fails: 1 min, 5 min, 30 min, 1 h, 6 h, then give up
RETRY_DELAYS_S: Final = (60, 300, 1800, 3600, 21_600)
MAX_IN_FLIGHT: Final = 16
#: requests in flight per subscription: a slow or dead endpoint holds no more slots
MAX_PER_SUBSCRIPTION: Final = 2
#: bytes of a webhook's answer read (and discarded): only its status matters
MAX_RESPONSE_BYTES: Final = 4096
POLL_S: Final = 0.5


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


def delivery_body(did: str, kind: Kind, tr: records.Transition) -> bytes:
    """The exact bytes every attempt sends (and signs)."""
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


async def queue(
    conn: AsyncConnection, subs: Sequence[Any], kind: Kind, tr: records.Transition
) -> int:
    """One `pending` delivery, due now, per subscription (id, site_id) matching the
    transition's site, in the caller's transaction; returns how many."""
    due = timefmt.to_datetime(now_ms())
    created = 0
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


class Deliverer:
    """The delivery loop: sends due deliveries until `stop` is set."""

    def __init__(
        self, settings: Settings, engine: AsyncEngine, stop: asyncio.Event | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.scale = settings.notify_retry_scale
        self.timeout_s = settings.notify_timeout_s
        self._stop = stop if stop is not None else asyncio.Event()
        self._due = asyncio.Event()
        self._in_flight: set[str] = set()
        #: subscription id -> requests in flight
        self._per_subscription: Counter[int] = Counter()

    def wake(self) -> None:
        """Work is due now (new deliveries, a retry): look before the next poll."""
        self._due.set()

    def stop(self) -> None:
        self._stop.set()
        self._due.set()

    async def run(self) -> None:
        sem = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = GuardedConnector(
            allow_private=self.settings.probe_allow_private,
            force_close=True,  # nothing kept open to a host we do not trust
            limit=MAX_IN_FLIGHT,
        )
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # no proxy from the environment: the guard sees the target
        ) as session:
            while not self._stop.is_set():
                if not await self._start_due_retrying(session, sem, tasks):
                    break
                with contextlib.suppress(TimeoutError):  # woken early when work is due
                    await asyncio.wait_for(self._due.wait(), POLL_S)
            if tasks:  # a clean stop lets requests in flight finish and be recorded
                await asyncio.wait(tasks, timeout=self.timeout_s + 1)

    async def _start_due_retrying(
        self, session: aiohttp.ClientSession, sem: asyncio.Semaphore, tasks: set[asyncio.Task[None]]
    ) -> bool:
        """`_start_due`, through database errors; False when a stop came first. A stop
        during an error ends the loop quietly; a FATAL error is raised."""
        try:
            async for attempt in db_backoff("deliver", self._stop):
                with attempt:
                    if self._stop.is_set():
                        return False
                    self._due.clear()
                    await self._start_due(session, sem, tasks)
        except Exception as exc:
            if not self._stop.is_set() or dberrors.classify(exc) is DbFailure.FATAL:
                raise
            log_wait("deliver", exc, 0.0)
            return False
        return True

    async def _start_due(
        self, session: aiohttp.ClientSession, sem: asyncio.Semaphore, tasks: set[asyncio.Task[None]]
    ) -> None:
        """Claim the due deliveries there are slots for and start sending them."""
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
