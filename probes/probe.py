"""`sitewatch probe`: check the sites this process owns and publish what it saw.

Ownership is Kafka's: the probes form one consumer group (`<prefix>probes`) on the
compacted `sites` topic, and each owns the sites of its assigned partitions. `sites` is
a table, not a queue: on every assignment the probe reads its partitions whole from the
beginning (offsets are never committed), and on revocation it forgets their sites.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from sitewatch import metrics
from sitewatch.clock import now_ms
from sitewatch.settings import Settings
from sitewatch.streams import deadletter, records
from sitewatch.streams.broker import resolve_flavor
from sitewatch.streams.enums import CheckType, Role
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import Topic, TopicNames

from . import common
from .checks import Checker, CheckSpec
from .common import deadletter_error
from .schedule import SiteTable

log = structlog.get_logger(__name__)

#: `Probe.stats` key -> (metric, help)
STATS_METRICS = {
    "site_records": ("sitewatch_probe_site_records_total", "Records of sites consumed"),
    "deleted": ("sitewatch_probe_site_deletions_total", "Tombstones of sites consumed"),
    "dead_lettered": ("sitewatch_probe_dead_letters_total", "Records sent to a dead-letter topic"),
    "checks": ("sitewatch_probe_site_checks_total", "Sites checked (one round of their checks)"),
    "failed": (
        "sitewatch_probe_failing_site_checks_total",
        "Site checks with a failed availability check (rechecked sooner)",
    ),
    "results": ("sitewatch_probe_results_total", "Results published to check-results"),
    "discarded": (
        "sitewatch_probe_discarded_site_checks_total",
        "Site checks whose results were dropped: the site was deleted, paused or moved meanwhile",
    ),
}

#: failures of these make the site "failing" and trigger a recheck; tls_expiry does not
AVAILABILITY = frozenset({CheckType.HTTP, CheckType.TCP, CheckType.DNS})


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        gone = self.probe.table.drop_partitions({tp.partition for tp in revoked})
        if revoked:
            log.info(
                "partitions revoked",
                partitions=sorted(tp.partition for tp in revoked),
                sites_dropped=len(gone),
            )

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned:
            # the table must be read whole: start from the oldest record every time
            await self.probe.consumer.seek_to_beginning(*assigned)
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))


class Probe:
    def __init__(
        self,
        conf: Settings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        checker: Checker,
        name: str,
        concurrency: int,
        table: SiteTable,
    ) -> None:
        self.conf = conf
        self.names = TopicNames(conf.topic_prefix)
        self.consumer = consumer
        self.producer = producer
        self.checker = checker
        self.name = name
        self.table = table
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: partition -> highest offset applied: a poison record at or below it was
        #: dead-lettered already, when the partition was read before (bounded memory)
        self._read_up_to: dict[int, int] = {}
        self.stats: Counter[str] = Counter()

    # -- the sites table -----------------------------------------------------------------

    async def apply(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        try:
            site_id = records.parse_site_key(msg.key)
            if msg.value is None:
                self.table.delete(site_id)  # tombstone: the site is gone
                self.stats["deleted"] += 1
                return
            site = records.decode_site(msg.value)
            if site.site_id != site_id:
                raise ValueError(f"key {site_id} != site_id {site.site_id}")
        except Exception as exc:  # any failure to decode is poison, even a RecursionError
            await self._dead_letter(msg, deadletter_error(exc))
            return
        finally:
            seen = self._read_up_to.get(msg.partition, -1)
            self._read_up_to[msg.partition] = max(seen, msg.offset)
        self.table.upsert(site, msg.partition, time.monotonic())
        self.stats["site_records"] += 1
        self._wake.set()

    async def _dead_letter(self, msg: ConsumerRecord[bytes, bytes], error: str) -> None:
        if msg.offset <= self._read_up_to.get(msg.partition, -1):
            return  # the same poison record again, after a re-read of the partition
        self.stats["dead_lettered"] += 1
        letter = deadletter.dead_letter_for(
            msg, error, f"{self.conf.topic_prefix}probes:{self.name}", now_ms()
        )
        await deadletter.send_dead_letter(self.producer, letter, msg.key)

    async def consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=500, max_records=1000)
            for msgs in batches.values():
                for msg in msgs:
                    await self.apply(msg)

    # -- scheduling and checking ---------------------------------------------------------

    async def schedule(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            for site, generation in self.table.pop_due(now):
                await self._slots.acquire()  # bounded: late checks wait, never pile up
                task = asyncio.create_task(self._check(site, generation))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            due = self.table.next_due()
            wait = 1.0 if due is None else max(0.0, min(1.0, due - time.monotonic()))
            self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _check(self, site: records.SiteRecord, generation: int) -> None:
        failed = True
        try:
            spec = CheckSpec.from_site(site)
            started = now_ms()
            observations = await self.checker.run(spec, site.checks)
            failed = any(not o.ok for o in observations if o.check_type in AVAILABILITY)
            if not self.table.is_current(site.site_id, generation):
                self.stats["discarded"] += 1  # deleted, paused or moved away meanwhile
                return
            sends = [
                await self.producer.send(
                    self.names.check_results,
                    records.encode(
                        common.to_result(
                            spec, obs, role=Role.PRIMARY, probe=self.name, observed_at_ms=started
                        )
                    ),
                    key=records.site_key(site.site_id),
                )
                for obs in observations
            ]
            await asyncio.gather(*sends)
            self.stats["checks"] += 1
            self.stats["results"] += len(sends)
            self.stats["failed"] += int(failed)
        except Exception:
            log.exception("check failed unexpectedly", site_id=site.site_id)
        finally:
            self._slots.release()
            self.table.done(site.site_id, generation, failed, time.monotonic())
            self._wake.set()

    async def report(self, stop: asyncio.Event, every_s: float = 30.0) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            log.info("probe stats", owned_sites=len(self.table), **dict(self.stats))

    async def drain(self, timeout_s: float = 5.0) -> None:
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=common.default_name(), help="probe name (hostname)")
    parser.add_argument("--jitter", type=float, default=0.1, help="interval jitter, fraction")
    parser.add_argument(
        "--max-initial-delay",
        type=float,
        default=10.0,
        help="first check of a newly owned site within this many seconds (spreads bursts)",
    )
    common.add_common_arguments(parser)


async def main(args: argparse.Namespace, conf: Settings) -> int:
    if not common.valid_name(args.name):
        log.error(common.NAME_RULE, name=args.name[:100])
        return 2
    conf = await resolve_flavor(conf)
    names = TopicNames(conf.topic_prefix)
    await ensure_topics(
        conf.bootstrap_servers, names, conf.partitions, topics=[Topic.SITES, Topic.CHECK_RESULTS]
    )
    stop = common.stop_event()
    consumer = common.consumer(args, conf, f"{conf.topic_prefix}probes")
    producer = common.producer(conf)
    checker = Checker(common.checker_config(args, conf, Role.PRIMARY))
    table = SiteTable(args.jitter, args.max_initial_delay)
    probe = Probe(conf, consumer, producer, checker, args.name, args.concurrency, table)
    owned = metrics.Stat(
        "sitewatch_probe_owned_sites",
        "Sites of the partitions this probe owns",
        lambda: float(len(table)),
        gauge=True,
    )
    served = await metrics.start(
        conf,
        metrics.Process.PROBE,
        [metrics.counts_stats(probe.stats, STATS_METRICS), metrics.StatsCollector([owned])],
        metrics.consumer_lag(lambda: consumer),
    )
    consumer.subscribe([names.sites], listener=_Rebalance(probe))
    await producer.start()
    await consumer.start()
    await checker.start()
    log.info("probe started", name=args.name, group=f"{conf.topic_prefix}probes")
    tasks = [
        asyncio.create_task(probe.consume(stop)),
        asyncio.create_task(probe.schedule(stop)),
        asyncio.create_task(probe.report(stop)),
    ]
    code = 0
    try:
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in tasks and task.exception() is not None:
                log.error("probe task died", error=repr(task.exception()))
                code = 1
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await probe.drain()
        await consumer.stop()  # leave the group now: the others take over at once
        await producer.stop()
        await checker.close()
        if served is not None:
            await served.close()
        log.info("probe stopped", name=args.name, **dict(probe.stats))
    return code


def run(args: argparse.Namespace, conf: Settings) -> int:
    return common.run_loop(main(args, conf))
