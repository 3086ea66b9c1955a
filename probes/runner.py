"""What the probe and the verifier share: reading a topic, dead-lettering its poison,
publishing what a check saw, and running their tasks until a stop."""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator
from typing import ClassVar, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from structlog.typing import FilteringBoundLogger

from sitewatch.clock import now_ms
from sitewatch.settings import Settings
from sitewatch.streams import deadletter, records, timefmt
from sitewatch.streams.enums import Role
from sitewatch.streams.message import ConsumedRecord
from sitewatch.streams.topics import TopicNames

from .checks import Checker, CheckSpec, Observation

#: the wire holds this much of a result's `detail` (a redirect target or an error text
#: can be long)
MAX_DETAIL: Final = 2048
#: one poll waits this long for records, and hands over this many at most
POLL_MS: Final = 500
POLL_RECORDS: Final = 1000


def to_result(
    spec: CheckSpec,
    obs: Observation,
    *,
    role: Role,
    probe: str,
    observed_at_ms: int,
    request_id: str | None = None,
) -> records.CheckResult:
    """The `check-results` record of one observation."""
    return records.CheckResult(
        result_id=str(uuid.uuid4()),
        site_id=spec.site_id,
        endpoint_id=spec.endpoint_id,
        check_type=obs.check_type,
        role=role,
        probe=probe,
        request_id=request_id,
        ok=obs.ok,
        observed_at=timefmt.from_ms(observed_at_ms),
        http_status=obs.http_status,
        error=obs.error,
        timings_ms=obs.timings,
        tls_not_after=None
        if obs.tls_not_after is None
        else timefmt.from_datetime(obs.tls_not_after),
        detail=None if obs.detail is None else obs.detail[:MAX_DETAIL],
        error_cause=None if obs.error_cause is None else obs.error_cause.value,
    )


async def polled(
    consumer: AIOKafkaConsumer, stop: asyncio.Event
) -> AsyncIterator[list[ConsumedRecord]]:
    """The records of each poll, in order (an empty list when none came), until `stop`."""
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=POLL_RECORDS)
        yield [msg for batch in batches.values() for msg in batch]


async def supervise(
    tasks: list[asyncio.Task[None]], stop: asyncio.Event, log: FilteringBoundLogger, died: str
) -> int:
    """Run until `stop` is set or a task ends: 1 when one died (logged as `died`), else 0.
    The tasks are cancelled and awaited either way, and `stop` is set."""
    code = 0
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in tasks and task.exception() is not None:
                log.error(died, error=repr(task.exception()))
                code = 1
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, stopped, return_exceptions=True)
    return code


class CheckRunner(ABC):
    """A process that runs checks and publishes their results: the probe, the verifier."""

    #: the role its results carry
    role: ClassVar[Role]

    def __init__(
        self,
        conf: Settings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        checker: Checker,
        name: str,
        concurrency: int,
    ) -> None:
        self.conf = conf
        self.names = TopicNames(conf.topic_prefix)
        self.consumer = consumer
        self.producer = producer
        self.checker = checker
        self.name = name
        self.stats: Counter[str] = Counter()
        self._slots = asyncio.Semaphore(concurrency)

    @abstractmethod
    def dead_letter_as(self) -> str:
        """The consumer name its dead letters carry."""

    async def dead_letter(self, msg: ConsumedRecord, exc: BaseException) -> None:
        self.stats["dead_lettered"] += 1
        error = deadletter.error_of(exc)
        letter = deadletter.dead_letter_for(msg, error, self.dead_letter_as(), now_ms())
        await deadletter.send_dead_letter(self.producer, letter, msg.key)

    async def keyed_site(self, msg: ConsumedRecord) -> tuple[int, records.SiteRecord | None] | None:
        """A `sites` message's site id and site (None: a tombstone); None when it was
        poison, which is dead-lettered."""
        try:
            return records.keyed_site(msg.key, msg.value)
        except Exception as exc:  # any failure to decode is poison, even a RecursionError
            await self.dead_letter(msg, exc)
            return None

    def result(
        self, spec: CheckSpec, obs: Observation, observed_at_ms: int, request_id: str | None = None
    ) -> bytes:
        """The encoded `check-results` record of `obs`, under this process's name."""
        return records.encode(
            to_result(
                spec,
                obs,
                role=self.role,
                probe=self.name,
                observed_at_ms=observed_at_ms,
                request_id=request_id,
            )
        )
