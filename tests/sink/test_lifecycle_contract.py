"""The lifecycle core's transitions (streams/lifecycle.py) go through the sink cleanly.

A contract check between the producer of `site-events` and its consumer: random probe
results through the pure lifecycle, its transitions through the sink, in random batches
and with redeliveries; nothing is dead-lettered, the events match the core's view and
the projection equals its rebuild.
"""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch.sink import tables as t
from sitewatch.sink.drift import check
from sitewatch.sink.gate import WriteGate
from sitewatch.streams import lifecycle, records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.message import Record
from sitewatch.streams.state import Config, SiteConfig

from .helpers import TOPICS, feed

pytestmark = pytest.mark.integration

START = 1_790_000_000_000
DAY = 86_400_000


def _results(rng: random.Random, site_id: int, count: int) -> list[records.CheckResult]:
    out = []
    clock = START
    for n in range(count):
        clock += rng.choice((1000, 30_000, 300_000))
        kind = rng.random()
        if kind < 0.2:  # TLS: expiring in 3, 20 or 90 days
            days = rng.choice((3, 20, 90))
            out.append(
                records.CheckResult(
                    result_id=f"{site_id}-{n}",
                    site_id=site_id,
                    check_type=CheckType.TLS_EXPIRY,
                    ok=True,
                    observed_at=timefmt.from_ms(clock),
                    tls_not_after=timefmt.from_ms(clock + days * DAY),
                )
            )
        else:
            check_type = CheckType.HTTP if kind < 0.8 else CheckType.DNS
            out.append(
                records.CheckResult(
                    result_id=f"{site_id}-{n}",
                    site_id=site_id,
                    check_type=check_type,
                    ok=rng.random() < 0.55,
                    observed_at=timefmt.from_ms(clock),
                )
            )
    return out


async def test_lifecycle_transitions_apply_without_contradiction(engine: AsyncEngine) -> None:
    rng = random.Random(31)
    config = Config()
    produced: list[records.Transition] = []
    open_events: set[str] = set()
    for site_id in range(1, 16):
        settings = lifecycle.SiteContext(
            site_id, SiteConfig(site_id=site_id, url="https://x.example", num_of_checks=2), config
        )
        state = None
        for position, res in enumerate(_results(rng, site_id, 200), start=1):
            state, effects = lifecycle.apply(state, res, settings, position)
            produced += effects.transitions
        assert state is not None
        open_events |= {ev.event_id for ev in state.open.values()}
    assert len(produced) > 300, "the scenario should exercise the lifecycle"
    partitions = 4
    offsets = [0] * partitions
    msgs = []
    for tr in produced:
        p = tr.site_id % partitions
        msgs.append(
            Record(TOPICS.site_events, p, offsets[p], records.site_key(tr.site_id),
                       records.encode(tr))
        )  # fmt: skip
        offsets[p] += 1
    redelivered = msgs[: len(msgs) // 3]  # at-least-once: a crash replays a prefix
    results = await feed(engine, msgs[: len(msgs) // 2], batch=37)
    results += await feed(engine, redelivered + msgs[len(msgs) // 2 :], batch=53)
    assert sum(r.counts["dead_letters"] for r in results) == 0
    assert sum(r.counts["transitions"] for r in results) == len(produced)
    async with engine.connect() as conn:
        still_open = {
            r.id
            for r in await conn.execute(
                sa.select(t.events.c.id).where(t.events.c.ended_at.is_(None))
            )
        }
    assert still_open == open_events
    assert await check(WriteGate(engine, True)) == []
