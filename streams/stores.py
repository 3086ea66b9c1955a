"""The stores the processor keeps its sites in, and the cache in front of them.

Three stores, one shape, all by site key: the lifecycle state of each site
(`StateStore`), the raw `sites` record of each site (`SiteRecordStore`), and the results
parked until a site's settings arrive (`ParkedStore`). Each call names the
message it serves, so a store partitioned like the input (a Faust table) knows where
the key lives. The worker backs them with its Faust tables (`worker.RowStore`), replay, tests and
benchmarks with dicts (`MemoryStore`). No Faust here: this is the core's side.
"""

from __future__ import annotations

from itertools import islice
from typing import Final, Generic, Protocol, TypeVar

from .message import ConsumedRecord

V = TypeVar("V")

#: the site record of a deleted site (a tombstone on `sites`) while its state lasts
DELETED: Final = b""


class Store(Protocol):
    def get(self, key: bytes, msg: ConsumedRecord) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, msg: ConsumedRecord) -> None: ...

    def delete(self, key: bytes, msg: ConsumedRecord) -> None: ...


class StateStore(Store, Protocol):
    """Encoded lifecycle states (`state.dump_state`) by site key."""


class SiteRecordStore(Store, Protocol):
    """Raw `sites` records by key: None never seen (or purged), DELETED after a tombstone."""


class ParkedStore(Store, Protocol):
    """Results parked for missing settings (`state.dump_parked`, oldest first) by site
    key: None when nothing is parked. Owned by the driver; the core never sees them."""


class MemoryStore:
    """A dict behind the store protocols: replay, tests and benchmarks."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes, msg: ConsumedRecord) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes, msg: ConsumedRecord) -> None:
        self.data[key] = value

    def delete(self, key: bytes, msg: ConsumedRecord) -> None:
        self.data.pop(key, None)


class Recent(Generic[V]):
    """What the processor knows of the sites seen lately, by key, with their partition
    (their decoded settings; their states as stored).

    The processor is the only writer of its stores, so what it read or wrote stays
    true until it writes again: reading back every input's state and site record, and
    decoding the record, is what this saves. Bounded (the oldest half goes past `limit`), and a
    partition's entries are dropped when it is revoked (another worker may write it).
    """

    __slots__ = ("entries", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: dict[bytes, tuple[int, V]] = {}

    def get(self, key: bytes) -> tuple[int, V] | None:
        return self.entries.get(key)

    def put(self, key: bytes, partition: int, value: V) -> None:
        entries = self.entries
        entries.pop(key, None)  # newest last: the oldest are first to go
        entries[key] = (partition, value)
        if len(entries) > self.limit:
            for old in list(islice(entries, len(entries) - self.limit // 2)):
                del entries[old]

    def pop(self, key: bytes) -> None:
        self.entries.pop(key, None)

    def forget(self, partitions: set[int]) -> None:
        self.entries = {k: v for k, v in self.entries.items() if v[0] not in partitions}

    def __len__(self) -> int:
        return len(self.entries)
