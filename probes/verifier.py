"""The verifier: answer verify requests from another location (`sitewatch verifier
--name LOCATION`, started by `sitewatch.commands.verifier`).

Each location is a consumer group of its own (`<prefix>verifier.<LOCATION>`), so every
location sees every request; several processes of one location share the work. An
answer is a `role=verifier` result carrying the request's `request_id`, keyed by site so
it lands in the site's ordered input. Offsets are committed after the answers of a
batch are published (at least once: a repeated answer is harmless, a lost one is not).

A request names the site's custom headers (`headers_ref`) rather than carrying them:
the verifier reads `sites` itself (every partition, whole, without a group) and keeps
the records of sites that have headers, which it sends only to that record's origin.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sitewatch.clock import now_ms
from sitewatch.settings import Settings
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import Role
from sitewatch.streams.kafka_admin import partitions_of
from sitewatch.streams.message import ConsumedRecord

from .checks import Checker, CheckSpec
from .runner import CheckRunner, polled

log = structlog.get_logger(__name__)

#: `Verifier.stats` key -> (metric, help)
STATS_METRICS = {
    "requests": ("sitewatch_verifier_requests_total", "Verify requests consumed"),
    "answers": ("sitewatch_verifier_answers_total", "Answers published to check-results"),
    "stale": (
        "sitewatch_verifier_stale_requests_total",
        "Requests older than --max-age, not answered",
    ),
    "dead_lettered": (
        "sitewatch_verifier_dead_letters_total",
        "Records sent to a dead-letter topic",
    ),
}
#: how long a request that needs headers waits for `sites` to be read up to its end
BOOK_WAIT_S = 30.0


class SiteBook:
    """`sites` as the verifier needs it: the records of sites that have custom headers.

    Poison records are dead-lettered by the verifier, under its own consumer name; `ready`
    is set once every partition has been read up to where it ended at start.
    """

    def __init__(self) -> None:
        self.sites: dict[int, records.SiteRecord] = {}
        self.ready = asyncio.Event()

    def get(self, site_id: int) -> records.SiteRecord | None:
        return self.sites.get(site_id)

    def keep(self, site_id: int, site: records.SiteRecord | None) -> None:
        """Apply a `sites` record (None: a tombstone)."""
        if site is not None and site.custom_headers:
            self.sites[site_id] = site
        else:
            self.sites.pop(site_id, None)

    async def run(
        self, consumer: AIOKafkaConsumer, topic: str, verifier: Verifier, stop: asyncio.Event
    ) -> None:
        parts = await partitions_of(verifier.conf.bootstrap_servers, topic)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        await self._check_ready(consumer, ends)
        async for msgs in polled(consumer, stop):
            for msg in msgs:
                keyed = await verifier.keyed_site(msg)
                if keyed is not None:
                    self.keep(*keyed)
            await self._check_ready(consumer, ends)

    async def _check_ready(
        self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
    ) -> None:
        if not self.ready.is_set() and await _read_up_to(consumer, ends):
            self.ready.set()
            log.info("sites read", sites_with_headers=len(self.sites))


async def _read_up_to(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


class Verifier(CheckRunner):
    role = Role.VERIFIER

    def __init__(
        self,
        conf: Settings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        checker: Checker,
        name: str,
        concurrency: int,
        max_age_s: float,
    ) -> None:
        super().__init__(conf, consumer, producer, checker, name, concurrency)
        self.max_age_ms = int(max_age_s * 1000)
        self.book = SiteBook()

    def dead_letter_as(self) -> str:
        return f"{self.conf.topic_prefix}verifier.{self.name}"

    async def handle(self, msg: ConsumedRecord) -> None:
        try:
            if msg.value is None:
                raise ValueError("null verify request")
            req = records.decode_verify_request(msg.value)
            if msg.key is not None and msg.key != records.site_key(req.site_id):
                raise ValueError(f"key does not match site_id {req.site_id}")
            if req.headers_ref not in (None, records.headers_ref(req.site_id)):
                raise ValueError(f"headers_ref {req.headers_ref!r} names another site")
        except Exception as exc:  # any failure to decode is poison, even a RecursionError
            await self.dead_letter(msg, exc)
            return
        started = now_ms()
        if started - timefmt.to_ms(req.requested_at) > self.max_age_ms:
            self.stats["stale"] += 1  # the lifecycle stopped waiting long ago
            return
        site = None
        if req.headers_ref is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.book.ready.wait(), BOOK_WAIT_S)
            site = self.book.get(req.site_id)
        async with self._slots:
            spec = CheckSpec.from_request(req, site)
            observations = await self.checker.run(spec, [req.check_type])
        key = records.site_key(req.site_id)
        for obs in observations:
            value = self.result(spec, obs, started, req.request_id)
            await self.producer.send_and_wait(self.names.check_results, value, key=key)
            self.stats["answers"] += 1

    async def consume(self, stop: asyncio.Event) -> None:
        async for msgs in polled(self.consumer, stop):
            if not msgs:
                continue
            self.stats["requests"] += len(msgs)
            outcomes = await asyncio.gather(*(self.handle(m) for m in msgs), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    log.error("verify request failed", error=repr(outcome))
            await self.consumer.commit()
