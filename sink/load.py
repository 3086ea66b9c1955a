"""Read what a batch touches, for the fold (`fold.Loaded`): reads only, by id, in chunks.

Which of its transition ids are stored, its events and the open ones of its sites, the
stored state of those sites, and which of its events went with a deleted site. An
overlay (`shadow.py`) is laid over what the reads return: it wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from sitewatch.streams.enums import Reason, SiteState

from . import tables as t
from .fold import Batch, DecodedTransition, Loaded, cascade
from .projection import SiteTracker
from .rows import EventRow, event_columns, event_from_row
from .shadow import ShadowOverlay

_CHUNK = 5000  # ids per IN (...) list: few round trips, well within packet limits


class Reads(Protocol):
    """What a load needs of a transaction (`gate.Tx`)."""

    async def read(self, stmt: sa.Select[Any]) -> Sequence[sa.Row[Any]]: ...


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def load(tx: Reads, batch: Batch, base: ShadowOverlay | None) -> Loaded:
    """What `batch` touches, as the database holds it with `base` laid over it."""
    transitions = batch.transitions
    touched = {tr.site_id for _, tr in transitions}
    tids = list({tr.transition_id for _, tr in transitions})
    known: set[str] = set()
    for part in _chunks(tids):
        rows = await tx.read(
            sa.select(t.transitions.c.transition_id).where(t.transitions.c.transition_id.in_(part))
        )
        known.update(r[0] for r in rows)
    events: dict[str, EventRow] = {}
    cols = event_columns()
    eids = list({tr.event_id for _, tr in transitions})
    for part in _chunks(eids):
        for row in await tx.read(sa.select(*cols).where(t.events.c.id.in_(part))):
            events[row.id] = event_from_row(row)
    trackers: dict[int, SiteTracker] = {}
    site_list = sorted(touched - batch.deleted)
    present: set[int] = set()
    for part in _chunks(site_list):
        for row in await tx.read(
            sa.select(*cols).where(t.events.c.site_id.in_(part), t.events.c.ended_at.is_(None))
        ):
            events.setdefault(row.id, event_from_row(row))
        for row in await tx.read(
            sa.select(
                t.sites.c.site_id, t.sites.c.current_state, t.sites.c.last_status_change
            ).where(t.sites.c.site_id.in_(part))
        ):
            present.add(row.site_id)
            trackers[row.site_id] = SiteTracker(
                current_state=SiteState(row.current_state),
                last_status_change=row.last_status_change,
            )
    if base is not None:
        known.update(tid for tid in tids if tid in base.transition_ids)
        base.lay_over(events, trackers, eids, site_list)
    cascaded = cascade(events, batch.deleted)
    gone = await _gone_events(tx, transitions, events, batch.deleted, present, cascaded, base)
    return Loaded(known=known, events=events, trackers=trackers, gone=gone)


async def _gone_events(
    tx: Reads,
    transitions: Sequence[DecodedTransition],
    events: dict[str, EventRow],
    deleted: set[int],
    present: set[int],
    cascaded: set[str],
    base: ShadowOverlay | None,
) -> set[str]:
    """Events of the batch's transitions that were deleted with their site.

    A site's tombstone deletes its event rows (ON DELETE CASCADE), but the worker
    may still close such an event later (`auto_timeout`). Its transitions stay in
    the table (no foreign key there), which tells it from a transition for an event
    that never existed: that one is a contradiction.
    """
    candidates = {
        tr.event_id
        for _, tr in transitions
        if tr.reason is not Reason.OPENED
        and tr.event_id not in events
        and (tr.site_id in deleted or tr.site_id not in present)
    }
    if not candidates:
        return set()
    found = candidates & (cascaded | (base.gone_events if base is not None else set()))
    for part in _chunks(sorted(candidates - found)):
        rows = await tx.read(
            sa.select(t.transitions.c.event_id).where(t.transitions.c.event_id.in_(part)).distinct()
        )
        found.update(r[0] for r in rows)
    return found
