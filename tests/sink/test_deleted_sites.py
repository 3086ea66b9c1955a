"""A deleted site's events go with it (ON DELETE CASCADE), yet the worker still closes
them later (`auto_timeout`, docs/lifecycle.md rule 7). Found by the conformance suite: the sink
dead-lettered that closing transition as "transition for unknown event". Real MariaDB."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch.sink import tables as t
from sitewatch.streams import records
from sitewatch.streams.enums import EventState, Reason

from .helpers import Log, feed
from .test_apply import T0, T1, T2, tr

pytestmark = pytest.mark.integration

U, S, R = EventState.UP, EventState.SEEMS_DOWN, EventState.RESOLVED


async def rows(engine: AsyncEngine, table: sa.Table) -> list[sa.Row[object]]:
    async with engine.connect() as conn:
        return list(await conn.execute(sa.select(table)))


def timed_out() -> records.Transition:
    closing = tr("gone", 2, Reason.AUTO_TIMEOUT, S, R, 3, None, T2, T0)
    closing.source = "system:auto_timeout"
    return closing


@pytest.mark.parametrize("same_batch", [False, True], ids=["later-batch", "same-batch"])
async def test_sink_keeps_the_auto_timeout_of_a_deleted_sites_event(
    engine: AsyncEngine, same_batch: bool
) -> None:
    log = Log()
    site = records.SiteRecord(site_id=1, url="https://gone.example")
    await feed(
        engine, [log.site(site), log.transition(tr("gone", 1, Reason.OPENED, U, S, 0, 3, T0, T0))]
    )
    assert len(await rows(engine, t.events)) == 1
    later = [log.tombstone(1), log.transition(timed_out())]
    results = await feed(engine, later, batch=2 if same_batch else 1)
    assert [d.error for r in results for d, _ in r.dead_letters] == []
    assert sum(r.counts["of_deleted_sites"] for r in results) == 1
    # the history keeps both transitions; no event row, no site row comes back
    assert sorted(r.reason for r in await rows(engine, t.transitions)) == ["auto_timeout", "opened"]
    assert await rows(engine, t.events) == []
    assert await rows(engine, t.sites) == []
    # redelivered: a duplicate, as for any transition
    [again] = await feed(engine, [log.transition(timed_out())])
    assert again.dead_letters == [] and again.counts["duplicates"] == 1


async def test_sink_keeps_deleted_sites_transitions_in_shadow_mode_too(engine: AsyncEngine) -> None:
    log = Log()
    msgs = [
        log.site(records.SiteRecord(site_id=1, url="https://gone.example")),
        log.transition(tr("gone", 1, Reason.OPENED, U, S, 0, 3, T0, T0)),
        log.tombstone(1),
        log.transition(timed_out()),
    ]
    results = await feed(engine, msgs, writes=False, batch=1)
    assert [d.error for r in results for d, _ in r.dead_letters] == []
    assert await rows(engine, t.transitions) == []  # shadow: nothing written


async def test_sink_still_refuses_a_close_for_an_event_that_never_was(engine: AsyncEngine) -> None:
    log = Log()
    await feed(engine, [log.site(records.SiteRecord(site_id=1, url="https://a.example"))])
    await feed(engine, [log.tombstone(1)])
    [res] = await feed(
        engine, [log.transition(tr("never", 2, Reason.PROBE_CLEARED, S, R, 3, None, T1, T0))]
    )
    [(letter, _)] = res.dead_letters
    assert "unknown event never" in letter.error
