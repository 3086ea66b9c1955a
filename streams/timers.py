"""The processor's index of pending timers: which sites a tick must look at."""

from __future__ import annotations

import heapq


class Timers:
    """Pending timers: `due` is the truth (key -> (partition, deadline)); a heap per
    partition finds what is due without scanning every timer. Heap entries that no
    longer match `due` are stale and skipped; the heaps are rebuilt when stale entries
    outnumber live ones."""

    def __init__(self) -> None:
        self.due: dict[bytes, tuple[int, int]] = {}
        self._heaps: dict[int, list[tuple[int, bytes]]] = {}
        self._entries = 0

    def schedule(self, key: bytes, partition: int, deadline: int | None) -> None:
        if deadline is None:
            self.due.pop(key, None)
            return
        if self.due.get(key) == (partition, deadline):
            return
        self.due[key] = (partition, deadline)
        heapq.heappush(self._heaps.setdefault(partition, []), (deadline, key))
        self._entries += 1
        if self._entries > 2 * len(self.due) + 1024:
            self._rebuild()

    def pop_due(self, partition: int, at: int) -> list[bytes]:
        """Keys of `partition` whose deadline is at or before `at` (sorted), unscheduled."""
        heap = self._heaps.get(partition)
        found: list[bytes] = []
        while heap and heap[0][0] <= at:
            deadline, key = heapq.heappop(heap)
            self._entries -= 1
            if self.due.get(key) == (partition, deadline):
                del self.due[key]
                found.append(key)
        return sorted(found)

    def forget(self, partitions: set[int]) -> None:
        self.due = {k: v for k, v in self.due.items() if v[0] not in partitions}
        self._rebuild()

    def _rebuild(self) -> None:
        heaps: dict[int, list[tuple[int, bytes]]] = {}
        for key, (partition, deadline) in self.due.items():
            heaps.setdefault(partition, []).append((deadline, key))
        for heap in heaps.values():
            heapq.heapify(heap)
        self._heaps = heaps
        self._entries = len(self.due)
