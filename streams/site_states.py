"""Each site's lifecycle state as the driver keeps it: the row in its store, the rows of
recent sites kept between batches as stored (decoded on use), and a batch's view of them,
each state read and written once per batch (see `processor`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import structlog

from . import retention
from .message import ConsumedRecord
from .retention import MAX_STATE_BYTES
from .state import LifecycleState, Parked, dump_state, load_stored_state
from .stores import Recent, StateStore

log = structlog.get_logger(__name__)

#: cached for a site whose store holds no state (one that only parks, so far)
NO_STATE: Final = b""


class BatchStates:
    """The states a batch loaded (None: the site has none), as the core left them."""

    __slots__ = ("dirty", "encoded", "parts", "purged", "states")

    def __init__(self) -> None:
        self.states: dict[bytes, LifecycleState | None] = {}
        #: partition of each key in `states`
        self.parts: dict[bytes, int] = {}
        #: what the store holds of each key in `states` (as read, or as written)
        self.encoded: dict[bytes, bytes] = {}
        #: changed: written at the batch's end
        self.dirty: dict[bytes, ConsumedRecord] = {}
        #: forgotten: deleted at the batch's end (unless written again since)
        self.purged: dict[bytes, ConsumedRecord] = {}


class SiteStates:
    def __init__(self, store: StateStore, cached: int) -> None:
        self.store: Final = store
        #: as stored (decoding one is half the cost of reading it back, in a tenth of the
        #: memory of a decoded one); exact, as the processor is the store's only writer
        self._cache: Recent[bytes] = Recent(cached)

    def __len__(self) -> int:
        return len(self._cache)

    def cached(self) -> Iterator[tuple[bytes, bytes]]:
        """The rows kept between batches: (key, bytes)."""
        for key, (_, raw) in self._cache.entries.items():
            yield key, raw

    def load(
        self, key: bytes, msg: ConsumedRecord, b: BatchStates
    ) -> tuple[LifecycleState | None, list[Parked]]:
        """The site's state into the batch, and what a version that parked results in the
        state held there (the caller moves them, and marks the state dirty)."""
        hit = self._cache.get(key)
        raw = hit[1] if hit is not None else self.store.get(key, msg)
        state = None
        older: list[Parked] = []
        if raw:
            decoded = self.decode(key, raw)
            if decoded is not None:
                state, older = decoded
                b.encoded[key] = raw
        b.states[key] = state
        b.parts[key] = msg.partition
        return state, older

    def decode(self, key: bytes, raw: bytes) -> tuple[LifecycleState, list[Parked]] | None:
        """A stored state, and what an older version parked in it."""
        try:
            return load_stored_state(raw)
        except Exception as exc:
            # written by us, so this is a bug or an incompatible version: start the site
            # afresh (its events time out) rather than stop every site of the partition
            log.error("stored site state does not decode; starting afresh", key=key, error=str(exc))
            return None

    def write(self, b: BatchStates) -> None:
        """The batch's changes to the store; what the store holds now to the cache."""
        store = self.store
        for key, msg in b.purged.items():
            if key not in b.dirty:
                store.delete(key, msg)
        encoded = b.encoded
        for key, msg in b.dirty.items():
            state = b.states[key]
            assert state is not None
            data = encoded[key] = self._dump(key, state)
            store.put(key, data, msg)
        # as written, or as read for a state left unchanged (failed applies undone)
        cache = self._cache
        purged = b.purged
        for key, state in b.states.items():
            if state is None:
                if key in purged:
                    cache.pop(key)  # forgotten everywhere
                else:
                    cache.put(key, b.parts[key], NO_STATE)
                continue
            kept = encoded.get(key)
            if kept is None:
                cache.pop(key)
            else:
                cache.put(key, b.parts[key], kept)

    def pop(self, key: bytes) -> None:
        self._cache.pop(key)

    def forget(self, partitions: set[int]) -> None:
        self._cache.forget(partitions)

    def _dump(self, key: bytes, state: LifecycleState) -> bytes:
        data = dump_state(state)
        if len(data) <= MAX_STATE_BYTES:
            return data
        log.error("site state too large; trimming it", key=key, bytes=len(data))
        return retention.trim(state, data)
