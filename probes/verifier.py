"""`sitewatch verifier --name LOCATION`: answer verify requests from another location.

Each location is a consumer group of its own (`<prefix>verifier.<LOCATION>`), so every
location sees every request; several processes of one location share the work. An
answer is a `role=verifier` result carrying the request's `request_id`, keyed by site so
it lands in the site's ordered input. Offsets are committed after the answers of a
batch are published (at least once: a repeated answer is harmless, a lost one is not).
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from sitewatch import metrics
from sitewatch.settings import Settings
from sitewatch.streams import deadletter, records, timefmt
from sitewatch.streams.broker import resolve_flavor
from sitewatch.streams.enums import Role
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import Topic, TopicNames

from . import common
from .checks import Checker, CheckSpec

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
        self._slots = asyncio.Semaphore(concurrency)
        self.stats: Counter[str] = Counter()

    async def handle(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        try:
            if msg.value is None:
                raise ValueError("null verify request")
            req = records.verify_request_decoder.decode(msg.value)
        except (ValueError, records.DecodeError) as exc:
            self.stats["dead_lettered"] += 1
            letter = deadletter.dead_letter_for(
                msg, str(exc), f"{self.conf.topic_prefix}verifier.{self.name}", common.now_ms()
            )
            await deadletter.send_dead_letter(self.producer, letter, msg.key)
            return
        started = common.now_ms()
        if started - timefmt.to_ms(req.requested_at) > self.max_age_ms:
            self.stats["stale"] += 1  # the lifecycle stopped waiting long ago
            return
        async with self._slots:
            spec = CheckSpec.from_request(req)
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
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", args.name):
        log.error("bad verifier name", name=args.name)
        return 2
    conf = await resolve_flavor(conf)
    names = TopicNames(conf.topic_prefix)
    await ensure_topics(
        conf.bootstrap_servers,
        names,
        conf.partitions,
        topics=[Topic.VERIFY_REQUESTS, Topic.CHECK_RESULTS],
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
    consumer.subscribe([names.verify_requests])
    await producer.start()
    await consumer.start()
    await checker.start()
    log.info("verifier started", name=args.name, group=group)
    task = asyncio.create_task(verifier.consume(stop))
    code = 0
    try:
        await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
        if task.done() and task.exception() is not None:
            log.error("verifier died", error=repr(task.exception()))
            code = 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await checker.close()
        if served is not None:
            await served.close()
        log.info("verifier stopped", name=args.name, **dict(verifier.stats))
    return code


def run(args: argparse.Namespace, conf: Settings) -> int:
    return common.run_loop(main(args, conf))
