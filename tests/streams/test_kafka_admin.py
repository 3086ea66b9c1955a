"""Topic creation: `sites` and `check-results` stay co-partitioned even when a producer
wrote first and the broker auto-created one of them with its default count."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from sitewatch.devbroker import Broker
from sitewatch.streams.kafka_admin import ensure_topics, partitions_of
from sitewatch.streams.topics import Topic, TopicNames

pytestmark = pytest.mark.integration


async def test_missing_check_results_follows_a_sites_topic_a_producer_created(
    tansu: Broker, unique_prefix: str
) -> None:
    """Was: the worker exited 2 ("sites and check-results must have the same partition
    count") when an outside team published its sites before sitewatch first ran."""
    names = TopicNames(unique_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap)
    await producer.start()
    try:  # the broker creates the topic on first write, with its own default count
        await producer.send_and_wait(names.sites, b'{"site_id": 1, "url": "http://a/"}', b"1")
    finally:
        await producer.stop()
    auto = len(await partitions_of(tansu.bootstrap, names.sites))
    assert auto != 8  # the test means something only if the counts differ

    counts = await ensure_topics(tansu.bootstrap, names, 8)
    assert counts[names.check_results] == counts[names.sites] == auto
    assert counts[names.dead_letter(names.check_results)] == auto
    # topics that need no co-partitioning keep the configured count
    assert counts[names.name(Topic.SITE_EVENTS)] == 8


async def test_fresh_topics_get_the_configured_count(tansu: Broker, unique_prefix: str) -> None:
    names = TopicNames(unique_prefix)
    counts = await ensure_topics(tansu.bootstrap, names, 3)
    assert set(counts.values()) == {3} and len(counts) == 8
