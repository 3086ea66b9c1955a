"""The view's source: every transition of `site-events`, from the beginning, in order."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import TopicPartition

from sitewatch.streams import broker, records
from sitewatch.streams.kafka_admin import partitions_of


async def follow_transitions(
    bootstrap: str, topic: str, on_transition: Callable[[records.Transition], None]
) -> None:
    """Read `topic` from the beginning with no group (a pure observer, it commits
    nothing), calling `on_transition` for each record that decodes; runs until cancelled."""
    # Tansu answers a waiting fetch late: a short wait keeps the view live
    consumer = broker.reader(bootstrap, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        parts: list[int] = []
        while not parts:
            parts = await partitions_of(bootstrap, topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            msgs = sorted(
                (m for ms in batches.values() for m in ms), key=lambda m: (m.timestamp, m.offset)
            )
            for msg in msgs:
                if msg.value is None:
                    continue
                try:
                    tr = records.transition_decoder.decode(msg.value)
                except (records.DecodeError, records.ValidationError):
                    continue
                on_transition(tr)
    finally:
        await consumer.stop()
