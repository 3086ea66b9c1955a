"""The sink as a consumer of `site-events` another program writes, and the database's own
guarantees (docs/contract.md, Database), checked through the tables only."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from .harness import (
    Database,
    Follower,
    Installed,
    Producer,
    canonical,
    naive,
    run_cli,
    spawn,
    topic_partitions,
)
from .pipeline import PARTITIONS, Pipeline, base_ms, new_database

pytestmark = pytest.mark.integration

S = 1000
_site_ids = itertools.count(700_000)
SEVERITY = {"up": 0, "warning": 1, "degraded": 2, "seems_down": 3, "down": 4}
CLOSING = {"probe_cleared", "verifier_cleared", "false_alarm", "manual_override", "auto_timeout"}


def transition(
    event_id: str,
    site_id: int,
    seq: int,
    reason: str,
    before: str,
    after: str,
    at_ms: int,
    started_ms: int,
    check_type: str = "http",
    **extra: Any,
) -> dict[str, Any]:
    """A transition as another program writes one: nulls for what it does not set."""
    closing = reason in CLOSING
    return {
        "schema_version": 1,
        "transition_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event_id}/{seq}")),
        "event_id": event_id,
        "site_id": site_id,
        "endpoint_id": None,
        "check_type": check_type,
        "discriminator": None,
        "seq": seq,
        "reason": reason,
        "state_before": before,
        "state_after": after,
        "severity_before": SEVERITY[before],
        "severity_after": None if closing else SEVERITY[after],
        "started_at": canonical(started_ms),
        "ended_at": canonical(at_ms) if closing else None,
        "resolution_reason": reason if closing else None,
        "cause_event_id": None,
        "at": canonical(at_ms),
        "source": "replayer:contract",
        "metadata": None,
        "written_by": "another-program",  # unknown to sitewatch: ignored
        **extra,
    }


def event_id() -> str:
    return str(uuid.uuid4())


def transition_id_of(value: bytes | None) -> str | None:
    """The `transition_id` of a record of `site-events`, None for poison."""
    try:
        tid = json.loads(value or b"").get("transition_id")
    except (ValueError, AttributeError):
        return None
    return tid if isinstance(tid, str) else None


async def publish(pipeline: Pipeline, *trs: dict[str, Any]) -> None:
    for tr in trs:
        await pipeline.producer.send(pipeline.events_topic, tr["site_id"], tr)


async def stored(pipeline: Pipeline, site_id: int, count: int) -> list[dict[str, Any]]:
    return await pipeline.wait_stored(site_id, count)


async def test_sink_stores_transition_with_null_discriminator(pipeline: Pipeline) -> None:
    """Issue 10: was dead-lettered (`Expected str, got null - at $.discriminator`)."""
    site, t0, e = next(_site_ids), base_ms(), event_id()
    await publish(pipeline, transition(e, site, 1, "opened", "up", "seems_down", t0, t0))
    [row] = await stored(pipeline, site, 1)
    assert (row["event_id"], row["discriminator"], row["severity_after"]) == (e, "", 3)
    [event] = pipeline.events(site)
    assert (event["discriminator"], event["state"], event["severity"]) == ("", "seems_down", 3)
    # the sink met the transition before any settings: it made the site row itself
    site_row = pipeline.site_row(site)
    assert (site_row["current_state"], site_row["active_event_id"]) == ("seems_down", e)


async def test_every_transition_is_stored_once_with_its_offset(pipeline: Pipeline) -> None:
    sites = [next(_site_ids) for _ in range(12)]
    t0 = base_ms()
    sent: list[dict[str, Any]] = []
    for i, site in enumerate(sites):
        e = event_id()
        sent += [
            transition(e, site, 1, "opened", "up", "seems_down", t0 + i, t0 + i),
            transition(e, site, 2, "verifier_confirmed", "seems_down", "down", t0 + S, t0 + i),
            transition(e, site, 3, "verifier_cleared", "down", "resolved", t0 + 2 * S, t0 + i),
        ]
    await asyncio.gather(*(publish(pipeline, *sent[i::3]) for i in range(3)))  # interleaved
    await publish(pipeline, *sent)  # at least once: everything again
    rows = await pipeline.db.wait(
        "SELECT * FROM jetmon_event_transitions WHERE site_id IN %s",
        tuple(sites),
        until=lambda r: len(r) >= len(sent),
        what="every sent transition stored",
    )
    await asyncio.sleep(1.0)  # the duplicates have had their chance to be stored twice
    rows = pipeline.db.query(
        "SELECT * FROM jetmon_event_transitions WHERE site_id IN %s", tuple(sites)
    )
    assert sorted(r["transition_id"] for r in rows) == sorted(t["transition_id"] for t in sent)
    # each row names where it came from: the first copy on the topic
    first: dict[str, tuple[str, int, int]] = {}
    for rec in pipeline.follower.of(pipeline.events_topic):
        tid = transition_id_of(rec.value)
        if tid is not None and tid not in first:
            first[tid] = (rec.topic, rec.partition, rec.offset)
    await pipeline.follower.wait(
        lambda: all(r["transition_id"] in first for r in rows), "the follower's copy"
    )
    for r in rows:
        assert (r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) == first[
            r["transition_id"]
        ]
    events = pipeline.db.query(
        "SELECT site_id, COUNT(*) AS n FROM jetmon_events WHERE site_id IN %s GROUP BY site_id",
        tuple(sites),
    )
    assert sorted(e["n"] for e in events) == [1] * len(sites)


async def test_one_row_per_event_through_severity_changes(pipeline: Pipeline) -> None:
    site, t0, e = next(_site_ids), base_ms(), event_id()
    await publish(
        pipeline,
        transition(e, site, 1, "opened", "up", "warning", t0, t0, "tls_expiry"),
        transition(
            e, site, 2, "severity_escalation", "warning", "degraded", t0 + S, t0, "tls_expiry"
        ),
        transition(
            e, site, 3, "severity_deescalation", "degraded", "warning", t0 + 2 * S, t0, "tls_expiry"
        ),
        transition(
            e, site, 4, "probe_cleared", "warning", "resolved", t0 + 3 * S, t0, "tls_expiry"
        ),
    )
    rows = await stored(pipeline, site, 4)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    [event] = pipeline.events(site)
    assert (event["id"], event["state"], event["severity"], event["resolution_reason"]) == (
        e,
        "resolved",
        1,
        "probe_cleared",
    )
    assert (event["started_at"], event["ended_at"]) == (naive(t0), naive(t0 + 3 * S))


async def test_projection_follows_spec(pipeline: Pipeline) -> None:
    """Worst severity wins, the earliest `started_at` on ties; legacy site_status."""
    site, t0 = next(_site_ids), base_ms()
    early, late = event_id(), event_id()
    await publish(
        pipeline,
        transition(late, site, 1, "opened", "up", "seems_down", t0 + 5 * S, t0 + 5 * S, "tcp"),
        transition(early, site, 1, "opened", "up", "seems_down", t0 + 6 * S, t0, "http"),
    )
    await stored(pipeline, site, 2)
    row = pipeline.site_row(site)
    assert (row["current_state"], row["current_severity"], row["site_status"]) == (
        "seems_down",
        3,
        0,
    )
    assert row["active_event_id"] == early  # same severity: the one that started first
    assert row["last_status_change"] == naive(t0 + 5 * S)  # up -> seems_down, not later
    await publish(
        pipeline,
        transition(
            late, site, 2, "verifier_confirmed", "seems_down", "down", t0 + 7 * S, t0 + 5 * S, "tcp"
        ),
    )
    await stored(pipeline, site, 3)
    row = pipeline.site_row(site)
    assert (row["current_state"], row["current_severity"], row["active_event_id"]) == (
        "down",
        4,
        late,
    )
    assert (row["site_status"], row["last_status_change"]) == (2, naive(t0 + 7 * S))
    await publish(
        pipeline,
        transition(
            late, site, 3, "verifier_cleared", "down", "resolved", t0 + 8 * S, t0 + 5 * S, "tcp"
        ),
        transition(
            early, site, 2, "probe_cleared", "seems_down", "resolved", t0 + 9 * S, t0, "http"
        ),
    )
    await stored(pipeline, site, 5)
    row = pipeline.site_row(site)
    assert (row["current_state"], row["current_severity"], row["active_event_id"]) == (
        "up",
        0,
        None,
    )
    assert (row["site_status"], row["last_status_change"]) == (1, naive(t0 + 9 * S))


async def test_deleting_a_site_cascades_to_its_events(pipeline: Pipeline) -> None:
    site, t0, e = next(_site_ids), base_ms(), event_id()
    await pipeline.site(site)
    await publish(pipeline, transition(e, site, 1, "opened", "up", "seems_down", t0, t0))
    await stored(pipeline, site, 1)
    assert len(pipeline.events(site)) == 1
    await pipeline.producer.send(pipeline.sites_topic, site, None)
    await pipeline.db.wait(
        "SELECT site_id FROM jetpack_monitor_sites WHERE site_id = %s",
        site,
        until=lambda rows: rows == [],
        what="the site row deleted",
    )
    assert pipeline.events(site) == []  # ON DELETE CASCADE
    # the transitions are the history: they stay
    kept = pipeline.db.query("SELECT id FROM jetmon_event_transitions WHERE site_id = %s", site)
    assert len(kept) == 1
    # and the foreign key itself: no event row for a site that is not there
    with pytest.raises(pymysql.err.IntegrityError) as refused:
        pipeline.db.execute(
            "INSERT INTO jetmon_events (id, site_id, check_type, state, severity, started_at)"
            " VALUES (%s, %s, 'http', 'seems_down', 3, %s)",
            event_id(),
            site,
            naive(t0),
        )
    assert refused.value.args[0] == 1452


async def test_closed_event_rows_are_refused_by_the_database(pipeline: Pipeline) -> None:
    site, t0, e = next(_site_ids), base_ms(), event_id()
    await publish(
        pipeline,
        transition(e, site, 1, "opened", "up", "seems_down", t0, t0),
        transition(e, site, 2, "probe_cleared", "seems_down", "resolved", t0 + S, t0),
    )
    await stored(pipeline, site, 2)
    for change in ("state = 'down'", "severity = 4", "ended_at = NULL", "metadata = '{}'"):
        with pytest.raises(pymysql.err.MySQLError) as refused:
            pipeline.db.execute(f"UPDATE jetmon_events SET {change} WHERE id = %s", e)
        assert refused.value.args[0] == 1644, refused.value  # the trigger's SIGNAL
    [event] = pipeline.events(site)
    assert (event["state"], event["severity"]) == ("resolved", 3)
    # through the topic, a change to the closed event is a dead letter, not a write
    late = transition(e, site, 3, "verifier_confirmed", "seems_down", "down", t0 + 2 * S, t0)
    await publish(pipeline, late)
    letters = await pipeline.follower.wait(
        lambda: pipeline.dead_letters("site-events", site), "the dead letter of the late change"
    )
    assert "already closed" in letters[0]["error"]
    assert json.loads(letters[0]["value"])["transition_id"] == late["transition_id"]


async def test_a_second_open_event_per_tuple_is_refused(pipeline: Pipeline) -> None:
    site, t0, e = next(_site_ids), base_ms(), event_id()
    await publish(pipeline, transition(e, site, 1, "opened", "up", "seems_down", t0, t0))
    await stored(pipeline, site, 1)
    with pytest.raises(pymysql.err.IntegrityError) as refused:
        pipeline.db.execute(
            "INSERT INTO jetmon_events"
            " (id, site_id, endpoint_id, check_type, discriminator, state, severity, started_at)"
            " VALUES (%s, %s, NULL, 'http', '', 'seems_down', 3, %s)",
            event_id(),
            site,
            naive(t0 + S),
        )
    assert refused.value.args[0] == 1062  # the key unique among open events
    # a closed event of the same tuple is fine: the key only covers open ones
    pipeline.db.execute(
        "INSERT INTO jetmon_events"
        " (id, site_id, check_type, discriminator, state, severity, started_at, ended_at,"
        " resolution_reason) VALUES (%s, %s, 'http', '', 'resolved', 3, %s, %s, 'false_alarm')",
        event_id(),
        site,
        naive(t0 - 10 * S),
        naive(t0 - 5 * S),
    )
    # through the topic: a second `opened` for the open tuple is a dead letter
    second = transition(event_id(), site, 1, "opened", "up", "seems_down", t0 + S, t0 + S)
    await publish(pipeline, second)
    letters = await pipeline.follower.wait(
        lambda: pipeline.dead_letters("site-events", site), "the dead letter of the second open"
    )
    assert f"while event {e} is open for its tuple" in letters[0]["error"]


async def test_poison_records_are_dead_lettered_and_consumers_go_on(pipeline: Pipeline) -> None:
    site, t0 = next(_site_ids), base_ms()
    poison: list[bytes] = [
        b"{not json",
        b"[1, 2]",
        json.dumps({"transition_id": 5, "site_id": site}).encode(),
        json.dumps(
            transition(event_id(), site, 1, "sideways", "up", "seems_down", t0, t0)
        ).encode(),
        b"\xff\xfe binary",
    ]
    for value in poison:
        await pipeline.producer.send(pipeline.events_topic, site, value)
    good = transition(event_id(), site, 1, "opened", "up", "seems_down", t0, t0)
    await publish(pipeline, good)
    await stored(pipeline, site, 1)  # the sink went on past the poison
    letters = await pipeline.follower.wait(
        lambda: (lambda d: d if len(d) >= len(poison) else None)(
            pipeline.dead_letters("site-events", site)
        ),
        "a dead letter per poison record",
    )
    assert [(d["topic"], d["consumer"]) for d in letters] == [
        (pipeline.events_topic, f"{pipeline.prefix}sink")
    ] * len(poison)
    assert [d["value_encoding"] for d in letters] == ["utf-8"] * 4 + ["base64"]
    assert letters[0]["value"] == "{not json" and letters[0]["key"] == str(site)
    assert all(d["error"] for d in letters)

    # the worker too: poison on check-results and sites, then a good result goes through
    [worker_site] = pipeline.ids.isolated()
    await pipeline.site(worker_site, num_of_checks=5)
    await pipeline.producer.send(pipeline.results_topic, worker_site, b'{"kind": "result"}')
    await pipeline.producer.send(pipeline.results_topic, worker_site, b"\x00")
    wrong_key = pipeline.result(worker_site + 1, False, t0)
    await pipeline.producer.send(pipeline.results_topic, worker_site, wrong_key)  # misrouted
    await pipeline.producer.send(pipeline.sites_topic, worker_site, b'{"site_id": "x"}')
    await pipeline.fail(worker_site, t0)
    await pipeline.wait_transitions(worker_site, 1)
    letters = await pipeline.follower.wait(
        lambda: (lambda d: d if len(d) >= 3 else None)(
            pipeline.dead_letters("check-results", worker_site)
        ),
        "the worker's dead letters",
    )
    assert "does not match" in letters[2]["error"]
    await pipeline.follower.wait(
        lambda: pipeline.dead_letters("sites", worker_site), "the dead letter of the bad site"
    )


async def test_every_transition_on_the_topic_is_in_mysql_once(pipeline: Pipeline) -> None:
    """Last: whatever the scenarios so far wrote to `site-events` (the worker's and the
    other program's), the sink stored each exactly once or dead-lettered it."""
    await asyncio.sleep(1.0)
    records = pipeline.follower.of(pipeline.events_topic)
    ends: dict[int, int] = {}
    for rec in records:
        ends[rec.partition] = max(ends.get(rec.partition, 0), rec.offset + 1)
    group = f"{pipeline.prefix}sink"

    def caught_up(rows: list[dict[str, Any]]) -> bool:
        done = {r["kafka_partition"]: r["next_offset"] for r in rows}
        return all(done.get(p, 0) >= end for p, end in ends.items())

    await pipeline.db.wait(
        "SELECT kafka_partition, next_offset FROM sitewatch_offsets"
        " WHERE consumer_group = %s AND topic = %s",
        group,
        pipeline.events_topic,
        until=caught_up,
        what="the sink caught up with site-events",
        logs=pipeline.logs,
    )
    dead = {(d["partition"], d["offset"]) for d in pipeline.dead_letters("site-events")}
    expected: dict[str, tuple[int, int]] = {}
    for rec in records:
        if (rec.partition, rec.offset) in dead:
            continue
        tid = transition_id_of(rec.value)
        assert tid is not None, rec  # anything unreadable was dead-lettered
        expected.setdefault(tid, (rec.partition, rec.offset))
    rows = [
        r
        for r in pipeline.db.query(
            "SELECT transition_id, kafka_partition, kafka_offset FROM jetmon_event_transitions"
        )
        if r["kafka_offset"] < ends.get(r["kafka_partition"], 0)  # not what came since
    ]
    assert len(rows) == len({r["transition_id"] for r in rows})  # unique, as the key says
    assert {r["transition_id"]: (r["kafka_partition"], r["kafka_offset"]) for r in rows} == expected
    assert expected


# -- shadow mode: a sink of its own --------------------------------------------------------


@pytest.fixture
async def shadow(
    installed: Installed, bundled_broker: str, tmp_path: Path
) -> AsyncIterator[tuple[Database, str, Path]]:
    db = new_database()
    prefix = f"s{uuid.uuid4().hex[:6]}."
    env = {
        "SITEWATCH_KAFKA_BOOTSTRAP": bundled_broker,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_PARTITIONS": str(PARTITIONS),
        "SITEWATCH_STATE_DIR": str(tmp_path / "state"),
        "SITEWATCH_DATABASE_URL": db.url,
        "SITEWATCH_SINK_WRITES": "0",
        "SITEWATCH_LOG_FORMAT": "json",
    }
    try:
        run_cli(installed, ["migrate"], env)
        sink = spawn(installed, "shadow-sink", ["sink"], env, tmp_path)
        try:
            yield db, prefix, sink.log
        finally:
            assert sink.stop() == 0, sink.tail()
    finally:
        db.drop()


def shadow_totals(log: Path) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in log.read_text().splitlines():
        if '"shadow mode: would write"' in line:
            for k, v in json.loads(line).items():
                if isinstance(v, int):
                    totals[k] = totals.get(k, 0) + v
    return totals


async def test_shadow_mode_writes_nothing(
    shadow: tuple[Database, str, Path], bundled_broker: str
) -> None:
    db, prefix, log = shadow
    for topic in ("sites", "site-events"):
        await topic_partitions(bundled_broker, f"{prefix}{topic}")
    producer = await Producer(bundled_broker).start()
    try:
        t0, site, e = base_ms(), next(_site_ids), event_id()
        await producer.send(f"{prefix}sites", site, {"site_id": site, "url": "https://s.test/"})
        trs = [
            transition(e, site, 1, "opened", "up", "seems_down", t0, t0),
            transition(e, site, 2, "verifier_confirmed", "seems_down", "down", t0 + S, t0),
            transition(e, site, 3, "verifier_cleared", "down", "resolved", t0 + 2 * S, t0),
        ]
        for tr in trs:
            await producer.send(f"{prefix}site-events", site, tr)
        await producer.send(f"{prefix}site-events", site, b"{poison")
    finally:
        await producer.stop()
    deadline = time.monotonic() + 60
    while shadow_totals(log).get("messages", 0) < 5:
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        await asyncio.sleep(0.3)
    totals = shadow_totals(log)
    # it computed what it would write ...
    assert (totals["transitions"], totals["events_inserted"], totals["dead_letters"]) == (3, 1, 1)
    assert "shadow mode: would dead-letter" in log.read_text()
    # ... and wrote nothing: no row in any table, no offsets, no dead letter sent
    for table in (
        "jetpack_monitor_sites",
        "jetmon_events",
        "jetmon_event_transitions",
        "sitewatch_offsets",
    ):
        assert db.query(f"SELECT * FROM {table}") == [], table
    follower = await Follower(bundled_broker, [f"{prefix}site-events.dead-letter"]).start()
    try:
        await asyncio.sleep(1.0)
        assert follower.of(f"{prefix}site-events.dead-letter") == []
    finally:
        await follower.stop()
