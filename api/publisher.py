"""The API's only way to change anything the lifecycle owns: publish to Kafka.

The producer connects in the background, so the API serves reads (and says `degraded`
on /health) while the broker is away; a write then answers 503 instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from sitewatch.retry import backoff
from sitewatch.streams import broker
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import Topic, TopicNames

from .problems import Kind, Problem

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    partition: int
    offset: int


class Publisher:
    def __init__(
        self,
        bootstrap: list[str],
        names: TopicNames,
        partitions: int,
        send_timeout_s: float = 10.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.partitions = partitions
        self.send_timeout_s = send_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect(), name="api-publisher-connect")

    async def wait_ready(self, timeout_s: float) -> bool:
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        return self.ready

    async def _connect(self) -> None:
        def retrying(exc: BaseException, delay_s: float) -> None:
            log.warning("broker not reachable, retrying", error=str(exc), delay_s=delay_s)

        async for attempt in backoff(
            first_s=0.5,
            max_s=10.0,
            retry_if=lambda exc: isinstance(exc, KafkaError | OSError),
            on_retry=retrying,
        ):
            with attempt:
                producer = broker.producer(self.bootstrap, acks="all", request_timeout_ms=10_000)
                try:
                    # the topics the API writes (like every process, it creates what it needs)
                    await ensure_topics(
                        self.bootstrap,
                        self.names,
                        self.partitions,
                        topics=[Topic.SITES, Topic.CHECK_RESULTS],
                        connect_timeout_s=10,
                    )
                    await producer.start()
                except (KafkaError, OSError):
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
        log.info("publisher connected", bootstrap=self.bootstrap)

    async def publish(self, topic: str, key: bytes, value: bytes | None) -> Published:
        producer = self._producer
        if producer is None:
            raise Problem(Kind.UNAVAILABLE, "not connected to Kafka yet; nothing was published")
        try:
            meta = await asyncio.wait_for(
                producer.send_and_wait(topic, value=value, key=key), self.send_timeout_s
            )
        except (KafkaError, TimeoutError) as exc:
            log.warning("publish failed", topic=topic, error=str(exc))
            raise Problem(Kind.UNAVAILABLE, f"Kafka did not take the record: {exc}") from None
        return Published(topic=meta.topic, partition=meta.partition, offset=meta.offset)

    async def healthy(self, timeout_s: float = 2.0) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            parts = await asyncio.wait_for(producer.partitions_for(self.names.sites), timeout_s)
        except (KafkaError, TimeoutError):
            return False
        return bool(parts)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
