"""Feeding messages to the batch applier in-process (no broker), through the gate."""

from __future__ import annotations

from collections.abc import Sequence

from sitewatch.sink.batch import BatchApplier, BatchResult, Message, RawMessage
from sitewatch.sink.gate import WriteGate
from sitewatch.streams import records
from sitewatch.streams.topics import TopicNames
from sqlalchemy.ext.asyncio import AsyncEngine

PREFIX = "sinktest."
TOPICS = TopicNames(PREFIX)
GROUP = f"{PREFIX}sink"
NOW_MS = 1_800_000_000_000


async def feed(
    engine: AsyncEngine,
    messages: Sequence[Message],
    *,
    writes: bool = True,
    batch: int = 10_000,
) -> list[BatchResult]:
    gate = WriteGate(engine, writes)
    applier = BatchApplier(TOPICS, GROUP)
    results = []
    for start in range(0, len(messages), batch):
        async with gate.transaction() as tx:
            results.append(await applier.apply(tx, messages[start : start + batch], NOW_MS))
    return results


class Log:
    """Numbers messages per (topic, partition) like a broker would."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    def msg(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> RawMessage:
        off = self.next.get((topic, partition), 0)
        self.next[(topic, partition)] = off + 1
        return RawMessage(topic, partition, off, key, value)

    def transition(self, tr: records.Transition, partition: int = 0) -> RawMessage:
        return self.msg(
            TOPICS.site_events, partition, records.site_key(tr.site_id), records.encode(tr)
        )

    def site(self, site: records.SiteRecord, partition: int = 0) -> RawMessage:
        return self.msg(
            TOPICS.sites, partition, records.site_key(site.site_id), records.encode(site)
        )

    def tombstone(self, site_id: int, partition: int = 0) -> RawMessage:
        return self.msg(TOPICS.sites, partition, records.site_key(site_id), None)
