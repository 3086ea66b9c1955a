"""`sitewatch verifier --name LOCATION`: answer verify requests from another location.

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

import argparse
import asyncio
import contextlib
from collections import Counter

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from sitewatch import metrics
from sitewatch.clock import now_ms
from sitewatch.settings import Settings
from sitewatch.streams import deadletter, records, timefmt
from sitewatch.streams.broker import resolve_flavor
from sitewatch.streams.enums import Role
from sitewatch.streams.kafka_admin import ensure_topics, partitions_of
from sitewatch.streams.topics import Topic, TopicNames

from . import common
from .checks import Checker, CheckSpec
from .common import deadletter_error

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

    def apply(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        """Raises on a poison record (the caller dead-letters it)."""
        site_id = records.parse_site_key(msg.key)
        if msg.value is None:
            self.sites.pop(site_id, None)
            return
        site = records.decode_site(msg.value)
        if site.site_id != site_id:
            raise ValueError(f"key {site_id} != site_id {site.site_id}")
        if site.custom_headers:
            self.sites[site_id] = site
        else:
            self.sites.pop(site_id, None)

    async def run(self, consumer: AIOKafkaConsumer, topic: str, verifier: Verifier) -> None:
        parts = await partitions_of(verifier.conf.bootstrap_servers, topic)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while True:
            if not self.ready.is_set() and await _read_up_to(consumer, ends):
                self.ready.set()
                log.info("sites read", sites_with_headers=len(self.sites))
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for msgs in batches.values():
                for msg in msgs:
                    try:
                        self.apply(msg)
                    except Exception as exc:
                        await verifier.dead_letter(msg, deadletter_error(exc))


async def _read_up_to(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


class Verifier:
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
        self.conf = conf
        self.names = TopicNames(conf.topic_prefix)
        self.consumer = consumer
        self.producer = producer
        self.checker = checker
        self.name = name
        self.max_age_ms = int(max_age_s * 1000)
        self.book = SiteBook()
        self._slots = asyncio.Semaphore(concurrency)
        self.stats: Counter[str] = Counter()

    async def dead_letter(self, msg: ConsumerRecord[bytes, bytes], error: str) -> None:
        self.stats["dead_lettered"] += 1
        letter = deadletter.dead_letter_for(
            msg, error, f"{self.conf.topic_prefix}verifier.{self.name}", now_ms()
        )
        await deadletter.send_dead_letter(self.producer, letter, msg.key)

    async def handle(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        try:
            if msg.value is None:
                raise ValueError("null verify request")
            req = records.decode_verify_request(msg.value)
            if msg.key is not None and msg.key != records.site_key(req.site_id):
                raise ValueError(f"key does not match site_id {req.site_id}")
            if req.headers_ref not in (None, records.headers_ref(req.site_id)):
                raise ValueError(f"headers_ref {req.headers_ref!r} names another site")
        except Exception as exc:  # any failure to decode is poison, even a RecursionError
            await self.dead_letter(msg, deadletter_error(exc))
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
        for obs in observations:
            result = common.to_result(
                spec,
                obs,
                role=Role.VERIFIER,
                probe=self.name,
                observed_at_ms=started,
                request_id=req.request_id,
            )
            await self.producer.send_and_wait(
                self.names.check_results, records.encode(result), key=records.site_key(req.site_id)
            )
            self.stats["answers"] += 1

    async def consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=500, max_records=1000)
            msgs = [m for batch in batches.values() for m in batch]
            if not msgs:
                continue
            self.stats["requests"] += len(msgs)
            outcomes = await asyncio.gather(*(self.handle(m) for m in msgs), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    log.error("verify request failed", error=repr(outcome))
            await self.consumer.commit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="this verifier's location name")
    parser.add_argument(
        "--max-age", type=float, default=300.0, help="ignore requests older than this (s)"
    )
    common.add_common_arguments(parser)


async def main(args: argparse.Namespace, conf: Settings) -> int:
    if not common.valid_name(args.name):
        log.error(common.NAME_RULE, name=args.name[:100])
        return 2
    conf = await resolve_flavor(conf)
    names = TopicNames(conf.topic_prefix)
    await ensure_topics(
        conf.bootstrap_servers,
        names,
        conf.partitions,
        topics=[Topic.VERIFY_REQUESTS, Topic.CHECK_RESULTS, Topic.SITES],
    )
    group = f"{conf.topic_prefix}verifier.{args.name}"
    stop = common.stop_event()
    consumer = common.consumer(args, conf, group)
    producer = common.producer(conf)
    checker = Checker(common.checker_config(args, conf, Role.VERIFIER))
    verifier = Verifier(
        conf, consumer, producer, checker, args.name, args.concurrency, args.max_age
    )
    served = await metrics.start(
        conf,
        metrics.Process.VERIFIER,
        [metrics.counts_stats(verifier.stats, STATS_METRICS)],
        metrics.consumer_lag(lambda: consumer),
    )
    # `sites` whole, group-less: every verifier of every location needs every site's headers
    sites_reader = AIOKafkaConsumer(
        bootstrap_servers=conf.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    consumer.subscribe([names.verify_requests])
    await producer.start()
    await consumer.start()
    await sites_reader.start()
    await checker.start()
    log.info("verifier started", name=args.name, group=group)
    tasks = [
        asyncio.create_task(verifier.consume(stop)),
        asyncio.create_task(verifier.book.run(sites_reader, names.sites, verifier)),
    ]
    code = 0
    try:
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED"
        )
        for task in done:
            if task in tasks and task.exception() is not None:
                log.error("verifier died", error=repr(task.exception()))
                code = 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sites_reader.stop()
        await consumer.stop()
        await producer.stop()
        await checker.close()
        if served is not None:
            await served.close()
        log.info("verifier stopped", name=args.name, **dict(verifier.stats))
    return code


def run(args: argparse.Namespace, conf: Settings) -> int:
    return common.run_loop(main(args, conf))
