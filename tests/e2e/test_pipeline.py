"""End to end on Apache Kafka: the real CLI processes (probe, two verifiers, worker, sink)
and the real MariaDB, checking the local fleet with short intervals (tests/e2e/pipeline.py).
Everything is asserted through SQL on the MySQL tables and on `site-events`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sitewatch.probes.fleet import Behaviour, SiteScript
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType, Role
from tests.e2e.pipeline import (
    VERIFIERS,
    Pipeline,
    PlanRow,
    naive,
    read_to_end,
    running_pipeline,
    scratch_database,
)
from tests.kafka_util import RunningBroker

pytestmark = pytest.mark.integration


class Site:
    """Site ids of the scenarios (one or two sites each)."""

    OUTAGE = 1
    BRIEF = 2
    FALSE_ALARM = 3
    MAINTENANCE = 4
    TLS = 5
    PAIR_A = 6
    PAIR_B = 7


def plan() -> list[PlanRow]:
    now = datetime.now(UTC)
    window = records.MaintenanceWindow(
        start=timefmt.from_ms(int((now - timedelta(minutes=5)).timestamp() * 1000)),
        end=timefmt.from_ms(int((now + timedelta(hours=1)).timestamp() * 1000)),
    )
    return [
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


@pytest.fixture(scope="module")
async def pipeline(
    broker: RunningBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """One pipeline shared by every scenario of this module (it takes ~15 s to come up);
    each scenario uses sites of its own, so they cannot disturb each other."""
    with scratch_database() as db:
        base = tmp_path_factory.mktemp("e2e")
        async with running_pipeline(broker.bootstrap, db, base, plan()) as pipe:
            yield pipe


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
