"""End to end: the real CLI processes (probe, two verifiers, worker, sink) against the real
broker and the real MariaDB, checking the local fleet with short intervals.

One pipeline is shared by every scenario of this module (it takes ~15 s to come up);
each scenario uses sites of its own, so they cannot disturb each other. Everything is
asserted through SQL on the MySQL tables and on `site-events`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from sitewatch.migrations.command import upgrade
from sitewatch.probes.fleet import Behaviour, Fleet, SiteScript
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType, Role
from sitewatch.streams.kafka_admin import ensure_topics, partitions_of
from sitewatch.streams.topics import TopicNames
from tests.conftest import MYSQL_SERVER_URL
from tests.kafka_util import RunningBroker, produce, spawn, stop

pytestmark = pytest.mark.integration

PARTITIONS = 4
VERIFIERS = ("eu", "us")


class Site:
    """Site ids of the scenarios (one or two sites each)."""

    OUTAGE = 1
    BRIEF = 2
    FALSE_ALARM = 3
    MAINTENANCE = 4
    TLS = 5
    PAIR_A = 6
    PAIR_B = 7


@dataclass
class Pipeline:
    bootstrap: str
    names: TopicNames
    db: str
    fleet: Fleet
    fleet_names: dict[int, str]
    logs: Path
    procs: dict[str, Any] = field(default_factory=dict)

    def query(self, sql: str, *args: object) -> list[dict[str, Any]]:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=3306,
            user="root",
            password="",
            database=self.db,
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    async def sql(self, sql: str, *args: object) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query, sql, *args)

    async def wait_sql(
        self,
        sql: str,
        *args: object,
        until: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout_s: float = 60,
        what: str = "",
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await self.sql(sql, *args)
            if until(rows):
                return rows
            if time.monotonic() > deadline:
                tails = {n: (self.logs / f"{n}.log").read_text()[-1500:] for n in self.procs}
                raise AssertionError(f"timed out waiting for {what or sql}: {rows}\n{tails}")
            await asyncio.sleep(0.1)

    async def events(self, site_id: int) -> list[dict[str, Any]]:
        return await self.sql(
            "SELECT * FROM jetmon_events WHERE site_id = %s ORDER BY started_at", site_id
        )

    async def site_row(self, site_id: int) -> dict[str, Any]:
        rows = await self.sql("SELECT * FROM jetpack_monitor_sites WHERE site_id = %s", site_id)
        return rows[0]

    async def transitions_topic(self) -> list[records.Transition]:
        rows = await read_to_end(self.bootstrap, self.names.site_events)
        return [records.transition_decoder.decode(v) for _, v in rows if v is not None]

    async def results_topic(self, site_id: int) -> list[records.CheckResult]:
        rows = await read_to_end(self.bootstrap, self.names.check_results)
        out = []
        for key, value in rows:
            if key != records.site_key(site_id) or value is None:
                continue
            rec = records.input_decoder.decode(value)
            if isinstance(rec, records.CheckResult):
                out.append(rec)
        return out


async def read_to_end(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of `topic` written before the call.

    A partition is read when its position reached the end offset of the call and it
    either gave a record stamped after the call or nothing for a second. ("Until idle"
    alone never ends on `check-results`, which gets ticks all the time, and Tansu may
    under-report an end offset, DESIGN.md.)"""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        # an out-of-range answer (seen on Tansu right after seek_to_beginning) must not
        # jump to the end and skip history
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        called_ms = time.time_ns() // 1_000_000
        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[bytes | None, bytes | None]] = []
        fresh: set[TopicPartition] = set()
        last = dict.fromkeys(tps, time.monotonic())
        deadline = time.monotonic() + 30
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, msgs in batch.items():
                last[tp] = time.monotonic()
                for m in msgs:
                    if m.timestamp > called_ms:
                        fresh.add(tp)
                    else:
                        out.append((m.key, m.value))
            pending = [
                tp
                for tp in tps
                if await consumer.position(tp) < ends[tp]
                or (tp not in fresh and time.monotonic() - last[tp] < 1.0)
            ]
            if not pending:
                return out
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
    finally:
        await consumer.stop()


def naive(ts: str) -> datetime:
    """A wire timestamp as MySQL's naive UTC DATETIME(3)."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def site_record(site_id: int, url: str, **kw: Any) -> tuple[bytes, bytes]:
    rec = records.SiteRecord(
        site_id=site_id,
        url=url,
        check_interval_s=2,
        timeout_s=2,
        recheck_interval_s=1,
        num_of_checks=kw.pop("num_of_checks", 2),
        peer_offline_limit=len(VERIFIERS),
        verify_timeout_s=6,
        **kw,
    )
    return records.site_key(site_id), records.encode(rec)


@pytest.fixture(scope="module")
def e2e_db() -> Iterator[str]:
    """A database of this module's own on the machine's MariaDB."""
    name = f"sw_e2e_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


@pytest.fixture(scope="module")
async def pipeline(
    broker: RunningBroker, e2e_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    base = tmp_path_factory.mktemp("e2e")
    prefix = f"e2e{uuid.uuid4().hex[:6]}."
    names = TopicNames(prefix)
    url = f"{MYSQL_SERVER_URL}/{e2e_db}"
    await upgrade(url)  # `sitewatch migrate` itself runs in test_dev / the sink tests

    fleet = await Fleet().start()
    now = datetime.now(UTC)
    window = records.MaintenanceWindow(
        start=timefmt.from_ms(int((now - timedelta(minutes=5)).timestamp() * 1000)),
        end=timefmt.from_ms(int((now + timedelta(hours=1)).timestamp() * 1000)),
    )
    plan: list[tuple[int, str, SiteScript, float | None, dict[str, Any]]] = [
        (Site.OUTAGE, "outage", SiteScript(), None, {}),
        # up, fail, up, fail...: each failure opens, the next success clears it before
        # num_of_checks failures could ask the verifiers
        (Site.BRIEF, "brief", SiteScript(Behaviour.FLAPPING, flap_period=1), None, {}),
        (
            Site.FALSE_ALARM,
            "false-alarm",
            SiteScript(Behaviour.ERROR_5XX, only_role=Role.PRIMARY),
            None,
            {},
        ),
        (
            Site.MAINTENANCE,
            "maintenance",
            SiteScript(Behaviour.DOWN),
            None,
            {"maintenance": [window]},
        ),
        (Site.TLS, "tls", SiteScript(), 5, {"checks": [CheckType.HTTP, CheckType.TLS_EXPIRY]}),
        (Site.PAIR_A, "pair-a", SiteScript(Behaviour.DOWN), None, {}),
        (Site.PAIR_B, "pair-b", SiteScript(Behaviour.DOWN), None, {}),
    ]
    rows = []
    fleet_names = {}
    for site_id, name, script, tls_days, extra in plan:
        site = await fleet.add(name, script, tls_days=tls_days)
        fleet_names[site_id] = name
        rows.append(site_record(site_id, site.url, **extra))
    ca = fleet.write_ca(base / "fleet-ca.pem")
    await ensure_topics([broker.bootstrap], names, PARTITIONS)
    await produce(broker.bootstrap, names.sites, rows)

    env = {
        "SITEWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_PARTITIONS": str(PARTITIONS),
        "SITEWATCH_STATE_DIR": str(base / "state"),
        "SITEWATCH_DATABASE_URL": url,
        "SITEWATCH_VERIFIERS": ",".join(VERIFIERS),
        "SITEWATCH_TICK_INTERVAL_S": "0.5",
        "SITEWATCH_PROBE_ALLOW_PRIVATE": "1",
        "SITEWATCH_PROBE_EXTRA_CA": str(ca),
        "SITEWATCH_LOG_FORMAT": "json",
    }
    pipe = Pipeline(broker.bootstrap, names, e2e_db, fleet, fleet_names, base)
    commands = {
        "sink": ["sink", "--session-timeout-ms", "2000"],
        "worker": ["worker"],
        "probe": ["probe", "--name", "primary", "--max-initial-delay", "0.5"],
        **{f"verifier-{v}": ["verifier", "--name", v] for v in VERIFIERS},
    }
    for name, argv in commands.items():
        pipe.procs[name] = spawn(argv, env, base / f"{name}.log")
    try:
        # ready: the sink has materialized every site and the pipeline produced a row
        await pipe.wait_sql(
            "SELECT site_id FROM jetpack_monitor_sites WHERE url <> ''",
            until=lambda r: len(r) == len(plan),
            timeout_s=60,
            what="site rows",
        )
        yield pipe
    finally:
        codes = {name: stop(proc) for name, proc in pipe.procs.items()}
        await fleet.close()
        assert all(code == 0 for code in codes.values()), codes


async def test_outage_is_confirmed_promoted_and_cleared(pipeline: Pipeline) -> None:
    # the site has been up so far: no event yet
    assert await pipeline.events(Site.OUTAGE) == []
    await pipeline.fleet.set("outage", behaviour=Behaviour.DOWN)

    # seems_down first (the opening transition), then promoted by the verifiers
    rows = await pipeline.wait_sql(
        "SELECT * FROM jetmon_event_transitions WHERE site_id = %s ORDER BY id",
        Site.OUTAGE,
        until=lambda r: any(t["reason"] == "verifier_confirmed" for t in r),
        what="outage promoted",
    )
    assert [(t["reason"], t["state_after"]) for t in rows[:2]] == [
        ("opened", "seems_down"),
        ("verifier_confirmed", "down"),
    ]
    assert rows[1]["source"].startswith("verifier:")
    [event] = await pipeline.events(Site.OUTAGE)
    assert (event["state"], event["severity"], event["ended_at"]) == ("down", 4, None)
    site = await pipeline.site_row(Site.OUTAGE)
    assert (site["site_status"], site["current_state"], site["active_event_id"]) == (
        2,
        "down",
        event["id"],
    )
    # started_at is the first failure's observed_at, not the promotion time
    results = await pipeline.results_topic(Site.OUTAGE)
    first_failure = min(
        (r for r in results if r.role is Role.PRIMARY and not r.ok), key=lambda r: r.observed_at
    )
    failures = sorted(r.observed_at for r in results if r.role is Role.PRIMARY and not r.ok)
    assert event["started_at"] == naive(first_failure.observed_at), (event, failures[:5])
    assert rows[1]["at"] > event["started_at"]
    answers = {r.probe for r in results if r.role is Role.VERIFIER and not r.ok}
    assert answers == set(VERIFIERS)

    await pipeline.fleet.set("outage", behaviour=Behaviour.UP)
    [closed] = await pipeline.wait_sql(
        "SELECT * FROM jetmon_events WHERE site_id = %s AND ended_at IS NOT NULL",
        Site.OUTAGE,
        what="outage closed",
    )
    assert (closed["id"], closed["resolution_reason"], closed["state"]) == (
        event["id"],
        "verifier_cleared",
        "resolved",
    )
    site = await pipeline.site_row(Site.OUTAGE)
    assert (site["site_status"], site["current_state"], site["active_event_id"]) == (1, "up", None)

    on_topic = [t for t in await pipeline.transitions_topic() if t.site_id == Site.OUTAGE]
    reasons = [t.reason.value for t in on_topic]
    assert reasons == ["opened", "verifier_confirmed", "verifier_cleared"]
    assert {t.event_id for t in on_topic} == {event["id"]}


async def test_brief_failure_ends_as_probe_cleared(pipeline: Pipeline) -> None:
    rows = await pipeline.wait_sql(
        "SELECT * FROM jetmon_events WHERE site_id = %s AND ended_at IS NOT NULL",
        Site.BRIEF,
        what="brief failure closed",
    )
    assert {r["resolution_reason"] for r in rows} == {"probe_cleared"}
    trs = await pipeline.sql(
        "SELECT reason FROM jetmon_event_transitions WHERE site_id = %s", Site.BRIEF
    )
    assert {t["reason"] for t in trs} <= {"opened", "probe_cleared"}  # never promoted
    on_topic = [t for t in await pipeline.transitions_topic() if t.site_id == Site.BRIEF]
    assert {t.reason.value for t in on_topic} <= {"opened", "probe_cleared"}


async def test_failure_only_the_primary_sees_is_a_false_alarm(pipeline: Pipeline) -> None:
    def answered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # a verifier still joining its group may miss the first request: that one closes
        # with `no_verifier_answered`; wait for a round the verifiers took part in
        return [r for r in rows if json.loads(r["metadata"] or "{}").get("answers")]

    rows = await pipeline.wait_sql(
        "SELECT * FROM jetmon_event_transitions WHERE site_id = %s AND reason = 'false_alarm'"
        " ORDER BY id",
        Site.FALSE_ALARM,
        until=lambda r: bool(answered(r)),
        what="false alarm with verifier answers",
    )
    closing = answered(rows)[0]
    answers = json.loads(closing["metadata"])["answers"]
    assert set(answers) <= set(VERIFIERS) and all(answers.values()), answers  # they saw it up
    [event] = await pipeline.sql("SELECT * FROM jetmon_events WHERE id = %s", closing["event_id"])
    assert (event["resolution_reason"], event["state"]) == ("false_alarm", "resolved")
    assert event["severity"] == 3  # closed from seems_down: never promoted to down
    trs = await pipeline.sql(
        "SELECT reason FROM jetmon_event_transitions WHERE event_id = %s ORDER BY id",
        event["id"],
    )
    assert [t["reason"] for t in trs] == ["opened", "false_alarm"]
    results = await pipeline.results_topic(Site.FALSE_ALARM)
    assert {r.probe for r in results if r.role is Role.VERIFIER and r.ok} >= set(answers)
    assert not [r for r in results if r.role is Role.VERIFIER and not r.ok]
    on_topic = [t for t in await pipeline.transitions_topic() if t.event_id == event["id"]]
    assert [t.reason.value for t in on_topic] == ["opened", "false_alarm"]
    assert {t.reason.value for t in await pipeline.transitions_topic() if t.site_id == 3} <= {
        "opened",
        "false_alarm",
    }


async def test_tls_certificate_expiring_in_5_days_is_degraded(pipeline: Pipeline) -> None:
    [event] = await pipeline.wait_sql(
        "SELECT * FROM jetmon_events WHERE site_id = %s AND check_type = 'tls_expiry'",
        Site.TLS,
        what="tls_expiry event",
    )
    assert (event["state"], event["severity"], event["ended_at"]) == ("degraded", 2, None)
    site = await pipeline.site_row(Site.TLS)
    assert (site["current_state"], site["current_severity"], site["site_status"]) == (
        "degraded",
        2,
        1,
    )
    # the http check of the same site is fine: no other event
    assert [e["check_type"] for e in await pipeline.events(Site.TLS)] == ["tls_expiry"]
    on_topic = [t for t in await pipeline.transitions_topic() if t.site_id == Site.TLS]
    assert [(t.reason.value, t.severity_after) for t in on_topic] == [("opened", 2)]


async def test_two_sites_with_open_events_are_independent(pipeline: Pipeline) -> None:
    query = "SELECT * FROM jetmon_events WHERE site_id IN (%s, %s) AND state = 'down'"
    both = await pipeline.wait_sql(
        query, Site.PAIR_A, Site.PAIR_B, until=lambda r: len(r) == 2, what="both down"
    )
    a, b = sorted(both, key=lambda e: e["site_id"])
    assert a["id"] != b["id"]
    for event in (a, b):
        site = await pipeline.site_row(event["site_id"])
        assert (site["site_status"], site["active_event_id"]) == (2, event["id"])

    # only A recovers: its event closes; B's stays open and unchanged
    await pipeline.fleet.set("pair-a", behaviour=Behaviour.UP)
    await pipeline.wait_sql(
        "SELECT * FROM jetmon_events WHERE id = %s AND ended_at IS NOT NULL",
        a["id"],
        what="pair-a closed",
    )
    await asyncio.sleep(3)  # several more failing checks of B
    [b_now] = await pipeline.sql("SELECT * FROM jetmon_events WHERE id = %s", b["id"])
    assert (b_now["state"], b_now["ended_at"], b_now["started_at"]) == (
        "down",
        None,
        b["started_at"],
    )
    assert (await pipeline.site_row(Site.PAIR_A))["site_status"] == 1
    assert (await pipeline.site_row(Site.PAIR_B))["site_status"] == 2
    trs = await pipeline.transitions_topic()
    assert [t.reason.value for t in trs if t.event_id == a["id"]] == [
        "opened",
        "verifier_confirmed",
        "verifier_cleared",
    ]
    assert [t.reason.value for t in trs if t.event_id == b["id"]] == [
        "opened",
        "verifier_confirmed",
    ]


async def test_site_in_maintenance_opens_nothing(pipeline: Pipeline) -> None:
    # last: by now the pipeline has run long enough for the other scenarios to open
    # and promote; the maintenance site has been failing all along
    results = await pipeline.results_topic(Site.MAINTENANCE)
    failures = [r for r in results if r.role is Role.PRIMARY and not r.ok]
    assert len(failures) >= 3, "the probe must have checked it (and seen it down)"
    assert await pipeline.events(Site.MAINTENANCE) == []
    assert (
        await pipeline.sql(
            "SELECT * FROM jetmon_event_transitions WHERE site_id = %s", Site.MAINTENANCE
        )
        == []
    )
    site = await pipeline.site_row(Site.MAINTENANCE)
    assert (site["site_status"], site["active_event_id"]) == (1, None)
    assert not [t for t in await pipeline.transitions_topic() if t.site_id == Site.MAINTENANCE]
    requests = await read_to_end(pipeline.bootstrap, pipeline.names.verify_requests)
    assert not [k for k, _ in requests if k == records.site_key(Site.MAINTENANCE)]
