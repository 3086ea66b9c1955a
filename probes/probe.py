"""The probe: check the sites this process owns and publish what it saw
(`sitewatch probe`, started by `sitewatch.commands.probe`).

Ownership is Kafka's: the probes form one consumer group (`<prefix>probes`) on the
compacted `sites` topic, and each owns the sites of its assigned partitions. `sites` is
a table, not a queue: on every assignment the probe reads its partitions whole from the
beginning (offsets are never committed), and on revocation it forgets their sites.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from sitewatch.clock import now_ms
from sitewatch.settings import Settings
from sitewatch.streams import records
from sitewatch.streams.enums import CheckType, Role
from sitewatch.streams.message import ConsumedRecord

from .checks import Checker, CheckSpec
from .runner import CheckRunner, polled
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


class Probe(CheckRunner):
    role = Role.PRIMARY

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
        super().__init__(conf, consumer, producer, checker, name, concurrency)
        self.table = table
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: partition -> highest offset applied: a poison record at or below it was
        #: dead-lettered already, when the partition was read before (bounded memory)
        self._read_up_to: dict[int, int] = {}

    def dead_letter_as(self) -> str:
        return f"{self.conf.topic_prefix}probes:{self.name}"

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    # -- the sites table -----------------------------------------------------------------

    async def apply(self, msg: ConsumedRecord) -> None:
        try:
            keyed = await self.keyed_site(msg)
        finally:
            seen = self._read_up_to.get(msg.partition, -1)
            self._read_up_to[msg.partition] = max(seen, msg.offset)
        if keyed is None:
            return
        site_id, site = keyed
        if site is None:
            self.table.delete(site_id)  # tombstone: the site is gone
            self.stats["deleted"] += 1
            return
        self.table.upsert(site, msg.partition, time.monotonic())
        self.stats["site_records"] += 1
        self._wake.set()

    async def dead_letter(self, msg: ConsumedRecord, exc: BaseException) -> None:
        if msg.offset <= self._read_up_to.get(msg.partition, -1):
            return  # the same poison record again, after a re-read of the partition
        await super().dead_letter(msg, exc)

    async def consume(self, stop: asyncio.Event) -> None:
        async for msgs in polled(self.consumer, stop):
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
            key = records.site_key(site.site_id)
            sends = [
                await self.producer.send(
                    self.names.check_results, self.result(spec, obs, started), key=key
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
