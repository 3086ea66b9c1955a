"""`sitewatch projection check [--repair]`: rebuild the projection from the transitions.

Folds `jetmon_event_transitions` in log order (`id`) through the same `SiteTracker` the
live sink uses, compares with the projection columns of every site row, reports the
sites that drift (exit 1) and, with `--repair`, rewrites them through the write gate.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import sqlalchemy as sa
import structlog

from sitewatch.settings import Settings
from sitewatch.streams.enums import EventState, Reason

from . import tables as t
from .batch import projection_of, upsert
from .db import make_engine
from .gate import Tx, WriteGate
from .projection import UP, Change, Projection, SiteTracker

log = structlog.get_logger(__name__)


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="rebuild and compare")
    parser.add_argument(
        "--repair", action="store_true", help="rewrite drifting sites (obeys SITEWATCH_SINK_WRITES)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def main() -> list[Drift]:
        engine = make_engine(settings.db_url)
        try:
            return await check(WriteGate(engine, settings.sink_writes), repair=args.repair)
        finally:
            await engine.dispose()

    drifts = asyncio.run(main())
    for d in drifts:
        print(f"site {d.site_id}: live {d.live} != rebuilt {d.rebuilt}")
    repaired = args.repair and settings.sink_writes
    print(f"{len(drifts)} drifting site(s)" + (", repaired" if repaired and drifts else ""))
    return 1 if drifts else 0  # drift found is reported as failure, repaired or not
