"""The batch applier on the real MariaDB: rows, projection, idempotence, bad input."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch.sink import tables as t
from sitewatch.sink.batch import BatchApplier
from sitewatch.sink.db import make_engine
from sitewatch.sink.drift import check
from sitewatch.sink.gate import WriteGate
from sitewatch.streams import records
from sitewatch.streams.enums import CheckType, EventState, Reason

from . import synthetic
from .conftest import snapshot
from .helpers import GROUP, NOW_MS, SITEWATCH, TOPICS, Log, feed, run_cli

pytestmark = pytest.mark.integration

T0 = "2026-11-26T10:00:00.000Z"
T1 = "2026-11-26T10:01:30.250Z"
T2 = "2026-11-26T10:02:00.000Z"
T3 = "2026-11-26T10:05:00.999Z"


def dt(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "")).replace(tzinfo=None)


def tr(
    event_id: str,
    seq: int,
    reason: Reason,
    before: EventState,
    after: EventState,
    sev_before: int,
    sev_after: int | None,
    at: str,
    started_at: str,
    *,
    site_id: int = 1,
    check_type: CheckType = CheckType.HTTP,
    **extra: Any,
) -> records.Transition:
    closing = reason.closes
    return records.Transition(
        transition_id=f"{event_id}:{seq}",
        event_id=event_id,
        site_id=site_id,
        check_type=check_type,
        seq=seq,
        reason=reason,
        state_before=before,
        state_after=after,
        severity_before=sev_before,
        severity_after=sev_after,
        started_at=started_at,
        ended_at=at if closing else None,
        resolution_reason=reason if closing else None,
        at=at,
        source="local",
        **extra,
    )


S, D, W, U, R = (
    EventState.SEEMS_DOWN,
    EventState.DOWN,
    EventState.WARNING,
    EventState.UP,
    EventState.RESOLVED,
)


async def site_row(engine: AsyncEngine, site_id: int = 1) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(sa.select(t.sites).where(t.sites.c.site_id == site_id))
        ).one_or_none()


async def event_rows(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        return {r.id: r for r in await conn.execute(sa.select(t.events))}


async def test_scripted_transitions_give_expected_rows_and_projection(engine: AsyncEngine) -> None:
    log = Log()
    # a transition before its site's settings: the site row is created from what we know
    await feed(engine, [log.transition(tr("h1", 1, Reason.OPENED, U, S, 0, 3, T0, T0))])
    row = await site_row(engine)
    assert row.url == "" and row.current_state == "seems_down" and row.current_severity == 3
    assert row.active_event_id == "h1" and row.site_status == 0
    assert row.last_status_change == dt(T0)

    site = records.SiteRecord(site_id=1, url="https://a.example", num_of_checks=5)
    await feed(
        engine,
        [
            log.site(site),
            log.transition(
                tr("h1", 2, Reason.VERIFIER_CONFIRMED, S, D, 3, 4, T1, T0, metadata={"v": 2})
            ),
            log.transition(
                tr("t1", 1, Reason.OPENED, U, W, 0, 1, T2, T2, check_type=CheckType.TLS_EXPIRY)
            ),
        ],
    )
    row = await site_row(engine)
    assert (row.url, row.num_of_checks) == ("https://a.example", 5)
    assert (row.current_state, row.current_severity, row.active_event_id) == ("down", 4, "h1")
    assert row.site_status == 2 and row.last_status_change == dt(T1)

    await feed(
        engine, [log.transition(tr("h1", 3, Reason.VERIFIER_CLEARED, D, R, 4, None, T3, T0))]
    )
    row = await site_row(engine)
    # the TLS warning is still open: the site is "warning", which legacy counts as up (1)
    assert (row.current_state, row.current_severity, row.active_event_id) == ("warning", 1, "t1")
    assert row.site_status == 1 and row.last_status_change == dt(T3)

    events = await event_rows(engine)
    h1 = events["h1"]
    assert (h1.state, h1.severity, h1.resolution_reason) == ("resolved", 4, "verifier_cleared")
    assert h1.started_at == dt(T0) and h1.ended_at == dt(T3) and h1.metadata == {"v": 2}
    assert events["t1"].ended_at is None and events["t1"].open_key is not None
    async with engine.connect() as conn:
        trans = (await conn.execute(sa.select(t.transitions).order_by(t.transitions.c.id))).all()
        offs = (await conn.execute(sa.select(t.offsets))).all()
    assert [x.transition_id for x in trans] == ["h1:1", "h1:2", "t1:1", "h1:3"]
    assert [(x.kafka_topic, x.kafka_offset) for x in trans] == [
        (TOPICS.site_events, 0),
        (TOPICS.site_events, 1),
        (TOPICS.site_events, 2),
        (TOPICS.site_events, 3),
    ]
    assert {(o.topic, o.next_offset) for o in offs} == {(TOPICS.site_events, 4), (TOPICS.sites, 1)}
    assert await check(WriteGate(engine, True)) == []

    # a tombstone deletes the site and, by cascade, its events; transitions stay (history)
    await feed(engine, [log.tombstone(1)])
    assert await site_row(engine) is None
    assert await event_rows(engine) == {}
    async with engine.connect() as conn:
        assert (
            await conn.execute(sa.select(sa.func.count()).select_from(t.transitions))
        ).scalar() == 4


async def test_replayed_transitions_are_no_ops(engine: AsyncEngine) -> None:
    items = list(synthetic.transitions(random.Random(7), n_sites=20, count=600))
    msgs = synthetic.as_messages(TOPICS.site_events, items)
    await feed(engine, msgs, batch=97)
    first = await snapshot(engine)
    # the same messages again (a redelivery), and duplicates inside one batch
    results = await feed(engine, msgs + msgs[:50], batch=10_000)
    assert results[0].counts["duplicates"] == len(msgs) + 50
    assert results[0].counts["transitions"] == 0
    assert await snapshot(engine) == first


async def test_invariant_2_every_event_change_writes_exactly_one_transition(
    engine: AsyncEngine,
) -> None:
    items = list(synthetic.transitions(random.Random(11), n_sites=30, count=1500))
    await feed(engine, synthetic.as_messages(TOPICS.site_events, items), batch=200)
    async with engine.connect() as conn:
        per_event = dict(
            (
                await conn.execute(
                    sa.select(t.transitions.c.event_id, sa.func.count()).group_by(
                        t.transitions.c.event_id
                    )
                )
            ).all()
        )
        max_seq = dict(
            (
                await conn.execute(
                    sa.select(t.transitions.c.event_id, sa.func.max(t.transitions.c.seq)).group_by(
                        t.transitions.c.event_id
                    )
                )
            ).all()
        )
    events = await event_rows(engine)
    expected: dict[str, int] = {}
    for item in items:
        expected[item.event_id] = expected.get(item.event_id, 0) + 1
    assert per_event == expected == max_seq
    assert set(events) == set(expected)
    last = {item.event_id: item for item in items}
    for eid, ev in events.items():
        final = last[eid]
        assert ev.state == final.state_after.value
        assert (ev.ended_at is None) == (final.ended_at is None)


async def test_invariant_1_event_transition_projection_one_transaction(
    engine: AsyncEngine,
) -> None:
    """A batch is all or nothing: kill its connection before commit, nothing is visible."""
    items = list(synthetic.transitions(random.Random(3), n_sites=10, count=300))
    msgs = synthetic.as_messages(TOPICS.site_events, items)
    before = await snapshot(engine)
    gate, applier = WriteGate(engine, True), BatchApplier(TOPICS, GROUP)
    with pytest.raises(sa.exc.DBAPIError):
        async with gate.transaction() as tx:
            result = await applier.apply(tx, msgs, NOW_MS)
            assert result.counts["transitions"] == 300 and result.counts["projections"] > 0
            # nothing is visible to another session before the commit
            assert await snapshot(engine) == before
            conn_id = (await tx._conn.execute(sa.text("SELECT CONNECTION_ID()"))).scalar()
            async with engine.connect() as killer:
                await killer.execute(sa.text(f"KILL {conn_id}"))
    assert await snapshot(engine) == before  # events, transitions, projection, offsets: none
    await feed(engine, msgs)
    after = await snapshot(engine)
    assert len(after["jetmon_event_transitions"]) == 300
    assert after["sitewatch_offsets"] and await check(gate) == []


async def test_contradictions_and_poison_are_dead_lettered_not_dropped(engine: AsyncEngine) -> None:
    log = Log()
    good = tr("h1", 1, Reason.OPENED, U, S, 0, 3, T0, T0)
    msgs = [
        log.transition(good),
        log.msg(TOPICS.site_events, 0, b"1", b"{not json"),
        log.msg(TOPICS.site_events, 0, b"1", b'{"schema_version": 1, "site_id": -4}'),
        # closing an event nobody opened
        log.transition(tr("ghost", 2, Reason.PROBE_CLEARED, S, R, 3, None, T1, T0)),
        # a non-opening change for an unknown event
        log.transition(tr("ghost", 1, Reason.VERIFIER_CONFIRMED, S, D, 3, 4, T1, T0)),
        # a second open event for the same tuple
        log.transition(tr("h2", 1, Reason.OPENED, U, S, 0, 3, T1, T1)),
        log.transition(tr("h1", 2, Reason.PROBE_CLEARED, S, R, 3, None, T2, T0)),
        # changing, and re-opening, the closed event
        log.transition(tr("h1", 3, Reason.VERIFIER_CONFIRMED, S, D, 3, 4, T3, T0)),
        log.transition(tr("h1", 4, Reason.OPENED, U, S, 0, 3, T3, T0)),
        log.msg(TOPICS.sites, 0, b"abc", b"{}"),
        log.msg(TOPICS.sites, 0, b"9", records.encode(records.SiteRecord(site_id=8, url="x"))),
    ]
    (result,) = await feed(engine, msgs)
    by_offset = {(d.topic, d.offset): d.error for d, _ in result.dead_letters}
    ev, st_ = TOPICS.site_events, TOPICS.sites
    assert sorted(by_offset) == [(ev, 1), (ev, 2), (ev, 3), (ev, 4), (ev, 5), (ev, 7), (ev, 8),
                                 (st_, 0), (st_, 1)]  # fmt: skip
    assert by_offset[(ev, 1)].startswith("malformed transition")
    assert by_offset[(ev, 2)].startswith("malformed transition")
    assert "unknown event ghost" in by_offset[(ev, 3)]
    assert "unknown event ghost" in by_offset[(ev, 4)]
    assert "while event h1 is open for its tuple" in by_offset[(ev, 5)]
    assert "already closed" in by_offset[(ev, 7)]
    assert "already exists (closed)" in by_offset[(ev, 8)]
    assert by_offset[(st_, 0)].startswith("malformed site record")
    assert "key 9" in by_offset[(st_, 1)]
    events = await event_rows(engine)
    assert set(events) == {"h1"} and events["h1"].resolution_reason == "probe_cleared"
    async with engine.connect() as conn:
        offs = {r.topic: r.next_offset for r in await conn.execute(sa.select(t.offsets))}
    assert offs == {TOPICS.site_events: 9, TOPICS.sites: 2}  # poison does not block progress


async def test_shadow_mode_writes_nothing_and_reports(engine: AsyncEngine) -> None:
    log = Log()
    await feed(engine, [log.transition(tr("h1", 1, Reason.OPENED, U, S, 0, 3, T0, T0))])
    before = await snapshot(engine)
    items = list(synthetic.transitions(random.Random(5), n_sites=10, count=400))
    msgs = [log.site(records.SiteRecord(site_id=3, url="https://b.example")), log.tombstone(1)]
    msgs += synthetic.as_messages(TOPICS.site_events, items)
    results = await feed(engine, msgs, writes=False, batch=100)
    assert await snapshot(engine) == before
    total = sum((r.counts for r in results), start=results[0].counts.__class__())
    assert total["transitions"] == 400 and total["offsets"] > 0
    assert total["sites_upserted"] == 1 and total["sites_deleted"] == 1
    assert total["dead_letters"] == 0  # shadow remembers what it would have written
    # and it reports exactly what a writing sink then writes
    written = await feed(engine, msgs, writes=True, batch=100)
    assert [r.counts for r in written] == [r.counts for r in results]


async def test_sqlite_applies_the_same(sqlite_url: str) -> None:
    items = list(synthetic.transitions(random.Random(9), n_sites=15, count=500))
    msgs = synthetic.as_messages(TOPICS.site_events, items)
    engine = make_engine(sqlite_url)
    try:
        await feed(engine, msgs, batch=73)
        await feed(engine, msgs[:100])  # replay
        snap = await snapshot(engine)
        assert len(snap["jetmon_event_transitions"]) == 500
        assert await check(WriteGate(engine, True)) == []
    finally:
        await engine.dispose()


async def _truncate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in ("jetmon_event_transitions", "jetmon_events", "sitewatch_offsets"):
            await conn.execute(sa.text(f"DELETE FROM {table}"))
        await conn.execute(sa.text("DELETE FROM jetpack_monitor_sites"))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rng=st.randoms(use_true_random=False),
    n_sites=st.integers(1, 8),
    count=st.integers(1, 300),
    batch=st.integers(1, 120),
)
async def test_invariant_9_rebuild_equals_live(
    engine: AsyncEngine, rng: random.Random, n_sites: int, count: int, batch: int
) -> None:
    await _truncate(engine)
    items = list(synthetic.transitions(rng, n_sites, count))
    await feed(engine, synthetic.as_messages(TOPICS.site_events, items), batch=batch)
    assert await check(WriteGate(engine, True)) == []


async def test_projection_check_reports_and_repairs_drift(engine: AsyncEngine, db_url: str) -> None:
    items = list(synthetic.transitions(random.Random(21), n_sites=5, count=200))
    await feed(engine, synthetic.as_messages(TOPICS.site_events, items))
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE jetpack_monitor_sites SET current_state='down', site_status=2")
        )
    gate = WriteGate(engine, True)
    env = {"SITEWATCH_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    cli = [SITEWATCH, "projection", "check"]
    found = await run_cli(cli, env)
    assert found.returncode == 1 and "drifting site(s)" in found.stdout
    drifts = await check(gate)
    assert drifts and {d.live.current_state for d in drifts} == {"down"}
    assert len(await check(WriteGate(engine, False), repair=True)) == len(drifts)  # shadow
    repaired = await run_cli([*cli, "--repair"], env)
    assert repaired.returncode == 1  # drift was found (and repaired)
    assert await check(gate) == []
    assert (await run_cli(cli, env)).returncode == 0
