"""Results parked until their site's settings arrive: the driver's store of them, kept out
of the core's state (see `processor`).

`Parking` owns the store, the parked lists kept decoded between batches and the index of
the sites that have any. The index is exact (the processor is the store's only writer, and
`rebuild` fills it from the stored rows), so a site absent from it has nothing parked and
its row is never read: the hot path of a site with settings asks a dict, not the store.
Within a batch each site's list is read once (`BatchParked`) and written at its end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import structlog

from . import retention
from .message import ConsumedRecord
from .state import Parked, dump_parked, load_parked
from .stores import ParkedStore, Recent

log = structlog.get_logger(__name__)


class BatchParked:
    """The parked lists a batch touched, oldest result first, and those it changed."""

    __slots__ = ("dirty", "held", "parts")

    def __init__(self) -> None:
        self.held: dict[bytes, list[Parked]] = {}
        #: partition of each key in `held`
        self.parts: dict[bytes, int] = {}
        self.dirty: dict[bytes, ConsumedRecord] = {}


class Parking:
    def __init__(self, store: ParkedStore, cached: int) -> None:
        self.store: Final = store
        self._cache: Recent[list[Parked]] = Recent(cached)
        #: site key -> partition of every site with parked results
        self.index: dict[bytes, int] = {}

    def __contains__(self, key: bytes) -> bool:
        return key in self.index

    def of(self, key: bytes, msg: ConsumedRecord, b: BatchParked) -> list[Parked]:
        """The site's parked results, read once per batch and kept decoded between
        batches; changed in place (then `changed`)."""
        held = b.held.get(key)
        if held is not None:
            return held
        b.parts[key] = msg.partition
        if key not in self.index:
            held = b.held[key] = []
            return held
        hit = self._cache.get(key)
        if hit is not None:
            held = b.held[key] = hit[1]  # no undo for parked lists: changed in place
            return held
        raw = self.store.get(key, msg)
        held = b.held[key] = self._decode(key, raw) if raw else []
        if not held:
            self.changed(key, msg, b)  # an empty or unreadable row: gone
        return held

    def changed(self, key: bytes, msg: ConsumedRecord, b: BatchParked) -> None:
        """The site's list (in `b.held`) changed: store it at the batch's end, keep the
        index exact."""
        b.dirty[key] = msg
        if b.held[key]:
            self.index[key] = msg.partition
        else:
            self.index.pop(key, None)

    def take(self, key: bytes, msg: ConsumedRecord, b: BatchParked) -> list[Parked]:
        """Hand over the site's parked results, oldest first, and keep none."""
        held = self.of(key, msg, b)
        taken = held[:]
        held.clear()
        self.changed(key, msg, b)
        return taken

    def adopt(
        self, key: bytes, older: Sequence[Parked], msg: ConsumedRecord, b: BatchParked
    ) -> None:
        """What a version that parked results in the state held there: before any
        parked since, once each."""
        held = self.of(key, msg, b)
        there = {p.position for p in held}
        held[:0] = [p for p in older if p.position not in there]
        self.changed(key, msg, b)

    def expiry(self, key: bytes, msg: ConsumedRecord, b: BatchParked) -> int | None:
        """When the site's oldest parked result expires (None: nothing parked)."""
        if key not in self.index:
            return None
        return retention.parked_expiry(self.of(key, msg, b))

    def write(self, b: BatchParked) -> None:
        """The batch's changed lists to the store; every list it touched to the cache."""
        store = self.store
        for key, msg in b.dirty.items():
            held = b.held[key]
            if held:
                store.put(key, dump_parked(held), msg)
            else:
                store.delete(key, msg)
        cache = self._cache
        for key, held in b.held.items():
            if held:
                cache.put(key, b.parts[key], held)
            else:
                cache.pop(key)

    def rebuild(self, rows: Iterable[tuple[bytes, int, bytes]]) -> dict[bytes, tuple[int, int]]:
        """Index stored rows (key, partition, bytes); each site's partition and expiry."""
        expiry: dict[bytes, tuple[int, int]] = {}
        for key, partition, raw in rows:
            held = self._decode(key, raw)
            if held:
                self.index[key] = partition
                until = retention.parked_expiry(held)
                assert until is not None
                expiry[key] = (partition, until)
        return expiry

    def forget(self, partitions: set[int]) -> None:
        self._cache.forget(partitions)
        self.index = {k: p for k, p in self.index.items() if p not in partitions}

    def _decode(self, key: bytes, raw: bytes) -> list[Parked]:
        try:
            return load_parked(raw)
        except Exception as exc:  # written by us: a bug or an incompatible version
            log.error("stored parked results do not decode; dropped", key=key, error=str(exc))
            return []
