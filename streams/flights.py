"""A batch on the wire: what the worker sent for one fetched batch, and its completion
once the broker confirmed it (the order of ADR 4 and ADR 6, see `worker`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from . import records
from .deadletter import log_dead_letter, log_unsent, message_key
from .faust_batching import Fetched, TableRows

#: a table's rows of one partition: key and value (None: a tombstone)
Rows = list[tuple[bytes, bytes | None]]
#: rows sent as one producer batch: (partition, its rows, the future of its base offset)
SentRows = tuple[int, Rows, Any]


@dataclass
class Flight:
    """A batch processed and sent, waiting for the broker's confirmations."""

    #: the batch, processed: its offsets and token, not its records
    fetched: Fetched
    #: how many records it had
    size: int
    started: float
    #: per table: its rows by partition
    rows: list[tuple[TableRows, dict[int, Rows]]] = field(default_factory=list)
    #: per table, once sent: its rows as producer batches
    changelog: list[tuple[TableRows, list[SentRows]]] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    letters: list[tuple[records.DeadLetter, Any]] = field(default_factory=list)


async def send_rows(
    producer: AIOKafkaProducer, topic: str, partition: int, items: Rows
) -> list[SentRows]:
    """Send table rows to their changelog partition as producer batches."""
    sent = []
    start = 0
    while start < len(items):
        batch = producer.create_batch()
        end = start
        while end < len(items):
            key, value = items[end]
            if batch.append(key=key, value=value, timestamp=None) is None:
                break  # full: the rest goes in the next one
            end += 1
        if end == start:
            raise ValueError(f"a {topic} row does not fit in a producer batch")
        fut = await producer.send_batch(batch, topic, partition=partition)
        sent.append((partition, items[start:end], fut))
        start = end
    return sent


async def send_changelog(producer: AIOKafkaProducer, flight: Flight) -> None:
    """A batch's table rows to their changelog partitions, one producer batch per
    partition (their partition is known)."""
    for table, by_part in flight.rows:
        sent = []
        for part, items in by_part.items():
            sent += await send_rows(producer, table.changelog, part, items)
        flight.changelog.append((table, sent))


async def send_letter(
    producer: AIOKafkaProducer, topic: str, key: bytes | None, letter: records.DeadLetter
) -> tuple[records.DeadLetter, Any]:
    """The send's future, or None if it could not even be queued (logged, skipped)."""
    log_dead_letter(letter)
    try:
        fut = await producer.send(topic, records.encode(letter), key=message_key(key))
    except Exception as exc:
        log_unsent(letter, exc)
        return letter, None
    return letter, fut


async def land(producer: AIOKafkaProducer, flight: Flight, outputs_first: bool) -> None:
    """Wait for the broker to confirm all a batch sent, then write its rows to the local
    store. With `outputs_first` the changelog rows are sent only once the outputs are
    confirmed (see `Worker.complete_batch`)."""
    if outputs_first:
        if flight.outputs:
            await asyncio.gather(*flight.outputs)
        await send_changelog(producer, flight)
    futures = [fut for _, sent in flight.changelog for *_, fut in sent]
    futures += flight.outputs
    if futures:
        await asyncio.gather(*futures)
    # a dead letter that fails is logged and skipped: it must not stop the worker
    letters = [(letter, fut) for letter, fut in flight.letters if fut is not None]
    outcomes = await asyncio.gather(*(fut for _, fut in letters), return_exceptions=True)
    for (letter, _), outcome in zip(letters, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            log_unsent(letter, outcome)
    for table, sent in flight.changelog:
        table.applied([(p, items, fut.result().offset + len(items) - 1) for p, items, fut in sent])
