"""Drift of the site projection: rebuilt from the transitions, compared, repaired.

What `sitewatch projection check [--repair]` runs. Folds `jetmon_event_transitions` in
log order (`id`) through the same `SiteTracker` the live sink uses, compares with the
projection columns of every site row, reports the sites that drift and, with `repair`,
rewrites them through the write gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sitewatch.streams.enums import EventState, LegacySiteStatus, Reason, Severity, SiteState

from . import tables as t
from .gate import Tx, WriteGate
from .projection import UP, Change, Projection, SiteTracker
from .write import upsert


@dataclass(frozen=True, slots=True)
class Drift:
    site_id: int
    live: Projection
    rebuilt: Projection


async def rebuild(tx: Tx) -> dict[int, Projection]:
    """The projection of every site that has transitions, from the transitions alone."""
    c = t.transitions.c
    trackers: dict[int, SiteTracker] = {}
    last_id = 0
    while True:  # keyset pages keep memory flat on a long history
        rows = await tx.read(
            sa.select(
                c.id,
                c.site_id,
                c.event_id,
                c.reason,
                c.state_after,
                c.severity_after,
                c.started_at,
                c.at,
            )
            .where(c.id > last_id)
            .order_by(c.id)
            .limit(20_000)
        )
        if not rows:
            break
        for row in rows:
            trackers.setdefault(row.site_id, SiteTracker()).apply(
                Change(
                    row.event_id,
                    Reason(row.reason),
                    EventState(row.state_after),
                    row.severity_after,
                    row.started_at,
                    row.at,
                )
            )
        last_id = rows[-1].id
    return {site_id: tracker.projection() for site_id, tracker in trackers.items()}


def projection_of(row: Any) -> Projection:
    """The stored projection of a `jetpack_monitor_sites` row."""
    return Projection(
        SiteState(row.current_state),
        Severity(row.current_severity),
        row.active_event_id,
        LegacySiteStatus(row.site_status),
        row.last_status_change,
    )


async def check(gate: WriteGate, repair: bool = False) -> list[Drift]:
    async with gate.transaction() as tx:
        rebuilt = await rebuild(tx)
        cols = [t.sites.c.site_id, *(t.sites.c[name] for name in t.PROJECTION_COLUMNS)]
        live = {row.site_id: projection_of(row) for row in await tx.read(sa.select(*cols))}
        drifts = [
            Drift(site_id, live_p, rebuilt.get(site_id, UP))
            for site_id, live_p in sorted(live.items())
            if live_p != rebuilt.get(site_id, UP)
        ]
        if repair:
            await tx.write(
                "projection_repaired",
                upsert(tx.dialect, t.sites, ["site_id"], t.PROJECTION_COLUMNS),
                [{"site_id": d.site_id, **d.rebuilt.as_row()} for d in drifts],
            )
    return drifts
