"""Create the topics a process needs when they are missing (aiokafka admin)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .broker import connect_admin
from .topics import CO_PARTITIONED, TOPIC_CONFIGS, Topic, TopicNames

log = structlog.get_logger(__name__)


async def ensure_topics(
    bootstrap: list[str] | str,
    names: TopicNames,
    partitions: int,
    topics: list[Topic] | None = None,
    dead_letters: bool = True,
    extra: list[str] | None = None,
    connect_timeout_s: float = 30.0,
) -> dict[str, int]:
    """Create each missing topic (and its dead-letter topic) with `partitions`.

    A missing `sites` or `check-results` takes the partition count of the other one if
    it exists already (for instance created by a producer that wrote first, with the
    broker's default count), so the two stay co-partitioned. Returns the partition count
    of every wanted topic as the broker reports it.
    """
    wanted: dict[str, dict[str, str]] = {}
    for topic in topics or list(Topic):
        wanted[names.name(topic)] = TOPIC_CONFIGS[topic]
        if dead_letters:
            wanted[names.dead_letter(names.name(topic))] = {}
    for name in extra or []:
        wanted[name] = {}
    admin = await connect_admin(bootstrap, connect_timeout_s)
    try:
        existing = set(await admin.list_topics())
        count = dict.fromkeys(wanted, partitions)
        group = [names.name(t) for t in CO_PARTITIONED]
        present = [name for name in group if name in existing]
        if present and any(name in wanted and name not in existing for name in group):
            [described] = await admin.describe_topics([present[0]])
            follow = len(described["partitions"]) or partitions
            for name in group:
                for each in (name, names.dead_letter(name)):
                    if each in count:
                        count[each] = follow
            if follow != partitions:
                log.warning(
                    "co-partitioning with an existing topic",
                    existing=present[0],
                    partitions=follow,
                    configured=partitions,
                )
        missing = [
            NewTopic(name, num_partitions=count[name], replication_factor=1, topic_configs=cfg)
            for name, cfg in wanted.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # lost a race: fine
                await admin.create_topics(missing)
            log.info(
                "created topics",
                topics=[t.name for t in missing],
                partitions=sorted({t.num_partitions for t in missing}),
            )
        counts: dict[str, int] = {}
        for _ in range(50):  # metadata of just-created topics can lag a moment
            described = await admin.describe_topics(list(wanted))
            counts = {t["topic"]: len(t["partitions"]) for t in described if t["partitions"]}
            if len(counts) == len(wanted):
                break
            await asyncio.sleep(0.1)
        return counts
    finally:
        await admin.close()


async def partitions_of(bootstrap: list[str] | str, topic: str, wait_s: float = 30.0) -> list[int]:
    """The partition numbers of `topic`, waiting up to `wait_s` for it to exist ([] if not).

    Asks the broker directly: a consumer's cached metadata only covers the topics it has
    subscribed to or been assigned, so `partitions_for_topic` can say None for a topic
    that exists (it does on Apache Kafka before the first assignment).
    """
    admin = await connect_admin(bootstrap)
    try:
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            described = await admin.describe_topics([topic])
            parts = [
                p["partition"] for t in described if not t["error_code"] for p in t["partitions"]
            ]
            if parts or asyncio.get_running_loop().time() > deadline:
                return sorted(parts)
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
