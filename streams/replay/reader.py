"""Reading one partition at a time from Kafka, in offset order, with a group-less consumer
(no consumer group, no commits: replay only reads)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from aiokafka import TopicPartition

from sitewatch.streams import broker, records, topics
from sitewatch.streams.kafka_admin import partitions_of
from sitewatch.streams.message import Record

from .window import Bound, record_stamp

FETCH_RECORDS: Final = 20_000
IDLE_POLL_MS: Final = 150


def partition_of(site_id: int, partitions: int) -> int:
    """The partition holding a site's records."""
    return topics.partition_of(records.site_key(site_id), partitions)


class TopicReader:
    """Reads one partition at a time, in offset order, with a plain (group-less) consumer."""

    def __init__(self, bootstrap: list[str]) -> None:
        self.bootstrap = bootstrap
        self.consumer = broker.reader(
            bootstrap,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=50,
        )

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def partitions(self, topic: str) -> list[int]:
        return await partitions_of(self.bootstrap, topic, wait_s=0)

    async def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        begin = (await self.consumer.beginning_offsets([tp]))[tp]
        end = (await self.consumer.end_offsets([tp]))[tp]
        return begin, end

    async def read(
        self,
        tp: TopicPartition,
        start: int,
        end: int,
        on_rows: Callable[[list[Record]], bool],
        max_records: int = FETCH_RECORDS,
        threaded: bool = False,
    ) -> None:
        """Deliver records from `start` in order until `on_rows` returns False.

        `end` (the end offset when asked) is a hint: Tansu under-reports it when the last
        batch holds several records (docs/contract.md), so reading goes on past it until the
        broker has nothing more for two polls in a row.
        """
        if end <= start and start == (await self.bounds(tp))[0]:
            return  # an empty partition (a non-empty one never reports end == begin)
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        idle = 0
        got_any = False  # after data, one empty poll (3x the fetch wait) means the end
        #: the previous batch, handled in a thread while the next one is fetched
        handling: asyncio.Future[bool] | None = None
        try:
            while True:
                got = await self.consumer.getmany(
                    tp, timeout_ms=IDLE_POLL_MS, max_records=max_records
                )
                if handling is not None:
                    going_on = await handling
                    handling = None
                    if not going_on:
                        return
                msgs = got.get(tp, [])
                if not msgs:
                    if await self.consumer.position(tp) >= end:
                        idle += 1
                        if idle >= 2 or (idle and got_any):
                            return  # past the reported end and the broker has nothing more
                    continue
                idle = 0
                got_any = True
                rows = [
                    Record(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp)
                    for m in msgs
                ]
                if not threaded:
                    if not on_rows(rows):
                        return
                    continue
                # Batches stay strictly in order (one at a time); the thread only lets
                # the event loop fetch the next batch while this one is applied.
                handling = asyncio.ensure_future(asyncio.to_thread(on_rows, rows))
        finally:
            if handling is not None:
                await handling

    async def first_stamp_at(self, tp: TopicPartition, offset: int, end: int) -> str | None:
        found: list[str | None] = []

        def take(rows: list[Record]) -> bool:
            found.append(record_stamp(rows[0].value))
            return False

        await self.read(tp, offset, end, take, max_records=1)
        return found[0] if found else None

    async def find_start(
        self, tp: TopicPartition, begin: int, end: int, bound: Bound, slack_ms: int
    ) -> int:
        """An offset at or before the first record at or after `bound`.

        `offsets_for_times` gives a hint only (broker write time, not the record's own
        time): step back from it until a record is older than the bound by `slack_ms`.
        """
        if begin >= end:
            return begin
        hint = (await self.consumer.offsets_for_times({tp: bound.ms}))[tp]
        guess = hint.offset if hint is not None else end
        older = Bound(bound.ms - slack_ms)
        step = 64
        offset = guess
        while offset > begin:
            offset = max(begin, guess - step)
            stamp = await self.first_stamp_at(tp, offset, end)
            if stamp is not None and older.before(stamp):
                break
            step *= 8
        return offset
