"""Which owned sites are due when: a pure table, driven by the probe's loop.

The probe owns the sites of the `sites` partitions the group assigned to it. Each
active site has at most one pending entry in a heap of due times; a check in flight has
none, and `done()` books the next one (`check_interval_s`, or `recheck_interval_s` after
a failure), with jitter so that sites added together do not stay in lockstep.
A generation number per site invalidates stale entries and stale results when a site
is deleted, paused or its partition is taken away.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass

from sitewatch.streams.records import SiteRecord


@dataclass(slots=True)
class Owned:
    site: SiteRecord
    partition: int
    generation: int
    running: bool = False
    scheduled: bool = False


class SiteTable:
    def __init__(
        self,
        jitter: float = 0.1,
        max_initial_delay_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.jitter = jitter
        self.max_initial_delay_s = max_initial_delay_s
        self._rng = rng or random.Random()
        self._sites: dict[int, Owned] = {}
        self._heap: list[tuple[float, int, int, int]] = []  # (due, seq, site_id, generation)
        self._seq = itertools.count()
        self._generations = itertools.count(1)

    def __len__(self) -> int:
        return len(self._sites)

    def __contains__(self, site_id: int) -> bool:
        return site_id in self._sites

    def get(self, site_id: int) -> Owned | None:
        return self._sites.get(site_id)

    def site_ids(self) -> list[int]:
        return list(self._sites)

    def _push(self, owned: Owned, due: float) -> None:
        owned.scheduled = True
        heapq.heappush(self._heap, (due, next(self._seq), owned.site.site_id, owned.generation))

    def _spread(self, interval: float) -> float:
        return interval * (1.0 + self._rng.uniform(-self.jitter, self.jitter))

    def upsert(self, site: SiteRecord, partition: int, now: float) -> None:
        """A (new version of a) site record from an owned partition."""
        owned = self._sites.get(site.site_id)
        if owned is None or owned.partition != partition:
            owned = Owned(site, partition, next(self._generations))
            self._sites[site.site_id] = owned
        else:
            owned.site = site  # a running check picks up the new settings next time
        if not site.active:
            owned.generation = next(self._generations)  # forget pending entries
            owned.scheduled = owned.running = False
            return
        if not owned.scheduled and not owned.running:
            spread = min(float(site.check_interval_s), self.max_initial_delay_s)
            first = self._rng.uniform(0, spread)
            self._push(owned, now + first)

    def delete(self, site_id: int) -> None:
        self._sites.pop(site_id, None)

    def drop_partitions(self, partitions: set[int]) -> list[int]:
        gone = [sid for sid, o in self._sites.items() if o.partition in partitions]
        for sid in gone:
            del self._sites[sid]
        return gone

    def next_due(self) -> float | None:
        while self._heap:
            due, _seq, site_id, generation = self._heap[0]
            owned = self._sites.get(site_id)
            if owned is not None and owned.generation == generation:
                return due
            heapq.heappop(self._heap)  # stale entry
        return None

    def pop_due(self, now: float) -> list[tuple[SiteRecord, int]]:
        """(site, generation) of every site due by `now`; they are running from here."""
        out: list[tuple[SiteRecord, int]] = []
        while self._heap and self._heap[0][0] <= now:
            _due, _seq, site_id, generation = heapq.heappop(self._heap)
            owned = self._sites.get(site_id)
            if owned is None or owned.generation != generation:
                continue
            owned.scheduled, owned.running = False, True
            out.append((owned.site, generation))
        return out

    def is_current(self, site_id: int, generation: int) -> bool:
        owned = self._sites.get(site_id)
        return owned is not None and owned.generation == generation

    def done(self, site_id: int, generation: int, failed: bool, now: float) -> None:
        """A check finished: book the next one (sooner after a failure)."""
        owned = self._sites.get(site_id)
        if owned is None or owned.generation != generation:
            return
        owned.running = False
        if not owned.site.active or owned.scheduled:
            return
        site = owned.site
        interval = (
            min(site.recheck_interval_s, site.check_interval_s)
            if failed
            else (site.check_interval_s)
        )
        self._push(owned, now + self._spread(float(interval)))
