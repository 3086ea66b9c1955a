"""What bounds the processor's own bookkeeping: the results it parks, a deleted site's
purge, and the encoded size of a site's state.

The core ignores `deleted_at` and never sees parked results (the driver keeps them in
their own store, `stores.ParkedStore`); these rules keep both. Pure functions of the
state, the parked list and stream time: the processor counts and logs what they drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .lifecycle import next_deadline as core_deadline
from .state import OUTBOX_HORIZON_MS, Config, LifecycleState, Parked, dump_state

#: results parked per site while its `sites` record is unknown; older ones are dropped
MAX_PARKED: Final = 1000
MAX_PARKED_BYTES: Final = 128 * 1024
#: a parked result whose site got no `sites` record for this long (stream time) is dropped
PARKED_TTL_MS: Final = 3_600_000
#: a site state encoded larger than this is trimmed (its outbox) before it is stored:
#: the changelog's messages must stay under the broker's 1 MiB limit
MAX_STATE_BYTES: Final = 768 * 1024
#: `deleted_at` of a site deleted before its partition's stream time was known
TIME_UNKNOWN: Final = -1


def park(parked: list[Parked], position: int, value: bytes, at: int) -> int | None:
    """Hold a result (at `position`, of stream time `at`) until its site's record arrives.
    Returns how many older ones went to stay within the caps, or None if this one is
    parked already (a redelivery)."""
    if any(p.position == position for p in parked):
        return None
    parked.append(Parked(position=position, value=value, at=at))
    size = sum(len(p.value) for p in parked)
    dropped = 0
    while len(parked) > 1 and (len(parked) > MAX_PARKED or size > MAX_PARKED_BYTES):
        size -= len(parked.pop(0).value)
        dropped += 1
    return dropped


def expire_parked(parked: list[Parked], at: int) -> int:
    """Drop the parked results older than `PARKED_TTL_MS` at stream time `at`; how many."""
    keep = [p for p in parked if p.at + PARKED_TTL_MS > at]
    dropped = len(parked) - len(keep)
    if dropped:
        parked[:] = keep
    return dropped


def parked_expiry(parked: Sequence[Parked]) -> int | None:
    """When the oldest of a site's parked results expires (None: nothing parked)."""
    return min(p.at for p in parked) + PARKED_TTL_MS if parked else None


def purge_at(state: LifecycleState) -> int:
    """When a deleted site's state may go: once no redelivered input can still need what
    its outbox would re-emit."""
    assert state.deleted_at is not None
    last = max((e.at for e in state.outbox), default=state.deleted_at)
    return max(state.deleted_at, last) + OUTBOX_HORIZON_MS


def earliest(*times: int | None) -> int | None:
    """The earliest of the stream times given; None if none is."""
    known = [t for t in times if t is not None]
    return min(known) if known else None


def next_deadline(
    state: LifecycleState | None, config: Config, parked_until: int | None = None
) -> int | None:
    """When this site next needs a tick: core timers, its purge, and the expiry of what
    it has parked (`parked_expiry`)."""
    if state is None:
        return parked_until
    if state.open:
        return earliest(core_deadline(state, config), parked_until)
    if state.deleted_at is not None:
        purge = 0 if state.deleted_at == TIME_UNKNOWN else purge_at(state)
        return earliest(purge, parked_until)
    return parked_until


def trim(state: LifecycleState, data: bytes) -> bytes:
    """A last resort for a state encoded (`data`) over `MAX_STATE_BYTES` (the core bounds
    marks, ids, open events and the outbox): lose the oldest re-emission records, never
    the events. Parked results are stored apart, within their own caps."""
    while len(data) > MAX_STATE_BYTES and len(state.outbox) > 1:
        state.outbox.pop(0)
        data = dump_state(state)
    return data
