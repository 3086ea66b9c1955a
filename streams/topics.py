"""Topic names and how the project creates them (docs/contract.md)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aiokafka.partitioner import murmur2


class Topic(enum.StrEnum):
    SITES = "sites"
    CHECK_RESULTS = "check-results"
    VERIFY_REQUESTS = "verify-requests"
    SITE_EVENTS = "site-events"


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Concrete names under a prefix (`SITEWATCH_TOPIC_PREFIX`, default `sitewatch.`)."""

    prefix: str = "sitewatch."

    def name(self, topic: Topic) -> str:
        return f"{self.prefix}{topic.value}"

    @property
    def sites(self) -> str:
        return self.name(Topic.SITES)

    @property
    def check_results(self) -> str:
        return self.name(Topic.CHECK_RESULTS)

    @property
    def verify_requests(self) -> str:
        return self.name(Topic.VERIFY_REQUESTS)

    @property
    def site_events(self) -> str:
        return self.name(Topic.SITE_EVENTS)

    @staticmethod
    def dead_letter(topic: str) -> str:
        return f"{topic}.dead-letter"

    def all(self) -> list[str]:
        return [self.name(t) for t in Topic]


#: topic -> extra configs; `sites` is a table, so it is compacted
TOPIC_CONFIGS: dict[Topic, dict[str, str]] = {
    Topic.SITES: {"cleanup.policy": "compact"},
    Topic.CHECK_RESULTS: {},
    Topic.VERIFY_REQUESTS: {},
    Topic.SITE_EVENTS: {},
}


#: keyed by site and read side by side by the worker: one partition count for both
CO_PARTITIONED: tuple[Topic, ...] = (Topic.SITES, Topic.CHECK_RESULTS)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a keyed record under the default partitioner (aiokafka, the Java
    client, Faust): how co-partitioned topics and tables agree on a site's home."""
    digest: int = murmur2(key)
    return (digest & 0x7FFFFFFF) % partitions
