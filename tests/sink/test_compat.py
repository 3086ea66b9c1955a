"""The sink reads liberally (docs/contract.md): transitions and sites records with absent or null
optional fields, or unknown extra ones, are stored, not dead-lettered. Real MariaDB."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch.sink import tables as t
from sitewatch.streams import records
from tests.wire_samples import FULL, Variant, variant, wire

from .helpers import TOPICS, Log, feed

pytestmark = pytest.mark.integration

T1 = "2026-11-26T10:00:30.000Z"


def closing(which: Variant, **kw: Any) -> dict[str, Any]:
    return variant(
        records.Transition,
        which,
        transition_id="t-2",
        seq=2,
        reason="probe_cleared",
        state_before="seems_down",
        state_after="resolved",
        severity_before=3,
        severity_after=None,
        at=T1,
        **kw,
    )


async def rows(engine: AsyncEngine, table: sa.Table) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(sa.select(table)))


async def test_sink_stores_transition_with_null_discriminator(engine: AsyncEngine) -> None:
    """Was: `malformed transition: Expected str, got null - at $.discriminator`."""
    log = Log()
    opened = {**FULL[records.Transition], "discriminator": None}
    [res] = await feed(engine, [log.msg(TOPICS.site_events, 0, b"7", wire(opened))])
    assert res.dead_letters == []
    [event] = await rows(engine, t.events)
    assert (event.id, event.discriminator, event.state) == ("e-1", "", "seems_down")
    [site] = await rows(engine, t.sites)
    assert (site.current_state, site.active_event_id) == ("seems_down", "e-1")


@pytest.mark.parametrize("which", list(Variant))
async def test_sink_stores_transitions_with_null_or_unknown_fields(
    engine: AsyncEngine, which: Variant
) -> None:
    log = Log()
    msgs = [
        log.msg(TOPICS.site_events, 0, b"7", wire(variant(records.Transition, which))),
        log.msg(TOPICS.site_events, 0, b"7", wire(closing(which))),
    ]
    [res] = await feed(engine, msgs)
    assert res.dead_letters == [], [d.error for d, _ in res.dead_letters]
    [event] = await rows(engine, t.events)
    assert (event.discriminator, event.state, event.severity, event.resolution_reason) == (
        "",
        "resolved",
        3,
        "probe_cleared",
    )
    assert event.ended_at is not None  # from `at` when ended_at is absent or null
    stored = sorted((r.seq, r.reason, r.severity_after) for r in await rows(engine, t.transitions))
    assert stored == [(1, "opened", 3), (2, "probe_cleared", None)]
    [site] = await rows(engine, t.sites)
    assert (site.current_state, site.active_event_id, site.site_status) == ("up", None, 1)


async def test_sink_stores_transitions_without_severities(engine: AsyncEngine) -> None:
    """Producers that drop nulls (omitempty) leave the severities out: their states give them."""
    log = Log()
    opened = variant(records.Transition, Variant.MINIMAL)
    del opened["severity_before"], opened["severity_after"]
    shut = closing(Variant.MINIMAL)
    del shut["severity_before"], shut["severity_after"]
    [res] = await feed(
        engine,
        [
            log.msg(TOPICS.site_events, 0, b"7", wire(opened)),
            log.msg(TOPICS.site_events, 0, b"7", wire(shut)),
        ],
    )
    assert res.dead_letters == [], [d.error for d, _ in res.dead_letters]
    stored = sorted(
        (r.seq, r.severity_before, r.severity_after) for r in await rows(engine, t.transitions)
    )
    assert stored == [(1, 0, 3), (2, 3, None)]


@pytest.mark.parametrize("which", list(Variant))
async def test_sink_stores_sites_record_with_null_or_unknown_fields(
    engine: AsyncEngine, which: Variant
) -> None:
    log = Log()
    [res] = await feed(
        engine, [log.msg(TOPICS.sites, 0, b"7", wire(variant(records.SiteRecord, which)))]
    )
    assert res.dead_letters == [], [d.error for d, _ in res.dead_letters]
    [site] = await rows(engine, t.sites)
    assert site.url == "http://127.0.0.1:9/"
    if which is not Variant.EXTRA:  # the defaults (docs/lifecycle.md)
        assert (site.active, site.check_interval_s, site.num_of_checks) == (True, 300, 3)
        assert (site.redirect_policy, site.checks) == ("follow", ["http"])
