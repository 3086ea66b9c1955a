"""Seeking to committed offsets while a rebalance takes partitions away."""

from __future__ import annotations

from sitewatch.streams.faust_batching import seek_assigned_to_committed


class Consumer:
    """The three calls of aiokafka's consumer the seek makes; asking for one partition's
    committed offset lets a rebalance revoke another meanwhile."""

    def __init__(
        self, assigned: set[int], committed: dict[int, int | None], revoke: dict[int, int]
    ) -> None:
        self.assigned = set(assigned)
        self.offsets = committed
        self.revoke = revoke  # asking for key revokes value
        self.seeks: dict[int, int] = {}

    def assignment(self) -> set[int]:
        return set(self.assigned)

    async def committed(self, partition: int) -> int | None:
        if partition in self.revoke:
            self.assigned.discard(self.revoke[partition])
        return self.offsets[partition]

    def seek(self, partition: int, offset: int) -> None:
        assert partition in self.assigned, f"IllegalStateError: {partition} not assigned"
        self.seeks[partition] = offset


async def test_worker_crashed_when_a_rebalance_revoked_a_partition_mid_seek() -> None:
    # CI: "IllegalStateError: No current assignment for partition sites-1" from Faust's
    # recovery (perform_seek) while the fail-over test's replacement worker joined
    consumer = Consumer({0, 1, 2}, {0: 10, 1: 20, 2: None}, revoke={0: 1, 1: 1})
    got = await seek_assigned_to_committed(consumer)
    assert consumer.seeks == {0: 10}
    assert got == {0: 10, 2: None}


async def test_seek_of_an_unrevoked_assignment_is_aiokafkas() -> None:
    consumer = Consumer({0, 1, 2}, {0: 0, 1: 7, 2: None}, revoke={})
    assert await seek_assigned_to_committed(consumer) == {0: 0, 1: 7, 2: None}
    assert consumer.seeks == {1: 7}  # as aiokafka: offsets of 0 or none are not sought


async def test_seek_with_nothing_assigned_is_empty() -> None:
    # aiokafka's asserts on an empty assignment; recovery can reach it after a revoke
    assert await seek_assigned_to_committed(Consumer(set(), {}, {})) == {}
