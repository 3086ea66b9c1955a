"""The one store of Kafka offsets kept in the database: `sitewatch_offsets`.

The consumers that write to the database (the sink, the notifier) keep the next offset
of each partition there, written in the same transaction as their data (ADR 3), so a
crash re-reads exactly what it had not applied. Offsets only move forward: a late write
from a partition revoked meanwhile cannot rewind one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from aiokafka import TopicPartition
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from sitewatch.streams.message import ConsumedRecord

from .tables import offsets as table

#: (topic, partition) -> the next offset to read (aiokafka's TopicPartition is such a pair)
Offsets = Mapping[tuple[str, int], int]


def advance(offsets: dict[tuple[str, int], int], msgs: Iterable[ConsumedRecord]) -> None:
    """Move `offsets` past each of `msgs`."""
    for m in msgs:
        tp = (m.topic, m.partition)
        offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)


def select(group: str) -> sa.Select[Any]:
    """The group's stored offsets: rows of (topic, kafka_partition, next_offset)."""
    c = table.c
    return sa.select(c.topic, c.kafka_partition, c.next_offset).where(c.consumer_group == group)


def upsert(dialect: str) -> sa.Insert:
    """INSERT, or move the stored offset forward (GREATEST: never back)."""
    if dialect == "mysql":
        my = mysql_insert(table)
        return my.on_duplicate_key_update(
            next_offset=sa.func.greatest(table.c.next_offset, my.inserted.next_offset)
        )
    lite = sqlite_insert(table)
    return lite.on_conflict_do_update(
        index_elements=["consumer_group", "topic", "kafka_partition"],
        set_={"next_offset": sa.func.max(table.c.next_offset, lite.excluded.next_offset)},
    )


def rows(group: str, offsets: Offsets) -> list[dict[str, Any]]:
    """The parameters of `upsert` for `offsets`, in a stable order (no lock-order cycles)."""
    return [
        {"consumer_group": group, "topic": topic, "kafka_partition": part, "next_offset": nxt}
        for (topic, part), nxt in sorted(offsets.items())
    ]


async def load(conn: AsyncConnection, group: str) -> dict[TopicPartition, int]:
    """Every offset the group has stored."""
    result = await conn.execute(select(group))
    return {TopicPartition(r.topic, r.kafka_partition): r.next_offset for r in result}


async def store(conn: AsyncConnection, group: str, offsets: Offsets) -> None:
    """Store `offsets` in the transaction of `conn`."""
    if offsets:
        await conn.execute(upsert(conn.dialect.name), rows(group, offsets))
