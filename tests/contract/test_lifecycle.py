"""The lifecycle (docs/lifecycle.md) through the installed worker and sink, driven from outside.

Every scenario has a site (and a partition) of its own; time is what its results say
(`observed_at`), so a timeout is reached by sending a result past it, never by waiting.
Assertions read `site-events` (validated by the shipped schema) and the MySQL tables.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from .harness import Producer, canonical, naive, new_id
from .pipeline import VERIFIERS, Pipeline, base_ms, reasons

pytestmark = pytest.mark.integration

S = 1000  # ms
Validate = Callable[[dict[str, Any]], None]


def meta(tr: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = tr.get("metadata") or {}
    return value


async def test_confirmed_by_three_verifiers_then_recovered(
    pipeline: Pipeline, validate_transition: Validate
) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=2, peer_offline_limit=3, verify_timeout_s=30)
    pipeline.plans[site] = [(v, False) for v in VERIFIERS]
    t0 = base_ms()
    await pipeline.fail(site, t0)
    await pipeline.fail(site, t0 + 1 * S)
    trs = await pipeline.wait_transitions(site, 2)
    opened, confirmed = trs
    assert (opened["reason"], opened["state_after"], opened["severity_after"]) == (
        "opened",
        "seems_down",
        3,
    )
    assert (confirmed["reason"], confirmed["state_after"], confirmed["severity_after"]) == (
        "verifier_confirmed",
        "down",
        4,
    )
    assert confirmed["source"].removeprefix("verifier:") in VERIFIERS
    assert meta(confirmed)["answers"] == dict.fromkeys(sorted(VERIFIERS), False)
    assert confirmed["started_at"] == opened["started_at"] == canonical(t0)  # the first failure
    [request] = pipeline.requests(site)
    assert request["event_id"] == opened["event_id"] and request["site_id"] == site

    rows = await pipeline.wait_stored(site, 2)
    row = pipeline.site_row(site)
    assert (row["current_state"], row["current_severity"], row["site_status"]) == ("down", 4, 2)
    assert row["active_event_id"] == opened["event_id"]

    await pipeline.succeed(site, t0 + 10 * S)
    trs = await pipeline.wait_transitions(site, 3)
    cleared = trs[2]
    assert (cleared["reason"], cleared["state_before"], cleared["state_after"]) == (
        "verifier_cleared",
        "down",
        "resolved",
    )
    assert cleared["severity_after"] is None and cleared["ended_at"] == canonical(t0 + 10 * S)
    for tr in trs:
        validate_transition(tr)
    assert {t["event_id"] for t in trs} == {opened["event_id"]}
    assert [t["seq"] for t in trs] == [1, 2, 3]

    rows = await pipeline.wait_stored(site, 3)
    assert [r["reason"] for r in rows] == ["opened", "verifier_confirmed", "verifier_cleared"]
    [event] = pipeline.events(site)
    assert (event["state"], event["severity"], event["resolution_reason"]) == (
        "resolved",
        4,
        "verifier_cleared",
    )
    assert (event["started_at"], event["ended_at"]) == (naive(t0), naive(t0 + 10 * S))
    row = pipeline.site_row(site)
    assert (row["current_state"], row["site_status"], row["active_event_id"]) == ("up", 1, None)


async def test_quorum_on_timeout_when_two_of_three_answer(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=2, peer_offline_limit=3, verify_timeout_s=20)
    pipeline.plans[site] = [("eu", False), ("us", False)]  # `ap` never answers
    t0 = base_ms()
    await pipeline.fail(site, t0)
    await pipeline.fail(site, t0 + 1 * S)
    await pipeline.wait_request(site)
    await pipeline.wait_transitions(site, 1)
    # stream time passes the deadline (asked at +1 s, 20 s to answer)
    await pipeline.fail(site, t0 + 25 * S)
    trs = await pipeline.wait_transitions(site, 2)
    confirmed = trs[1]
    assert (confirmed["reason"], confirmed["state_after"]) == ("verifier_confirmed", "down")
    assert confirmed["source"] == "system:verify_timeout"
    assert confirmed["at"] == canonical(t0 + 21 * S)  # at the deadline, not at the input
    assert (meta(confirmed)["quorum"], meta(confirmed)["confirmations"]) == (2, 2)
    assert meta(confirmed)["answers"] == {"eu": False, "us": False}


async def test_quorum_of_one_promotes_on_the_first_confirmation(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=2, peer_offline_limit=1, verify_timeout_s=30)
    pipeline.plans[site] = [("us", False)]
    t0 = base_ms()
    await pipeline.fail(site, t0)
    await pipeline.fail(site, t0 + 1 * S)
    trs = await pipeline.wait_transitions(site, 2)
    assert reasons(trs) == ["opened", "verifier_confirmed"]
    assert trs[1]["source"] == "verifier:us" and meta(trs[1])["quorum"] == 1


async def test_success_while_verifying_clears_the_event(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=2, peer_offline_limit=3, verify_timeout_s=30)
    t0 = base_ms()
    await pipeline.fail(site, t0)
    await pipeline.fail(site, t0 + 1 * S)
    request = await pipeline.wait_request(site)
    await pipeline.wait_stored(site, 1)
    row = pipeline.site_row(site)
    assert (row["current_state"], row["current_severity"], row["site_status"]) == (
        "seems_down",
        3,
        0,
    )
    await pipeline.succeed(site, t0 + 2 * S)
    trs = await pipeline.wait_transitions(site, 2)
    assert reasons(trs) == ["opened", "probe_cleared"]
    # the verifiers answer after the fact: nothing changes; a new failure opens anew
    for location in VERIFIERS:
        await pipeline.answer(request, location, False)
    await pipeline.fail(site, t0 + 3 * S)
    trs = await pipeline.wait_transitions(site, 3)
    assert reasons(trs) == ["opened", "probe_cleared", "opened"]
    assert trs[2]["event_id"] != trs[0]["event_id"]


async def test_false_alarm_when_the_verifiers_see_it_up(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=2, peer_offline_limit=3, verify_timeout_s=30)
    pipeline.plans[site] = [(v, True) for v in VERIFIERS]
    t0 = base_ms()
    await pipeline.fail(site, t0)
    await pipeline.fail(site, t0 + 1 * S)
    trs = await pipeline.wait_transitions(site, 2)
    assert reasons(trs) == ["opened", "false_alarm"]
    closing = trs[1]
    assert (closing["state_before"], closing["state_after"], closing["resolution_reason"]) == (
        "seems_down",
        "resolved",
        "false_alarm",
    )
    assert meta(closing)["confirmations"] == 0 and "no_verifier_answered" not in meta(closing)
    await pipeline.wait_stored(site, 2)
    [event] = pipeline.events(site)
    assert (event["resolution_reason"], event["severity"]) == ("false_alarm", 3)


async def test_no_verifier_answers_is_a_false_alarm(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=2, peer_offline_limit=2, verify_timeout_s=10)
    t0 = base_ms()
    await pipeline.fail(site, t0)
    await pipeline.fail(site, t0 + 1 * S)
    await pipeline.wait_request(site)
    await pipeline.fail(site, t0 + 12 * S)  # past the deadline of +11 s
    trs = await pipeline.wait_transitions(site, 3)
    # closed at the deadline; the failure that carried time past it opens a new event
    assert reasons(trs) == ["opened", "false_alarm", "opened"]
    assert trs[2]["started_at"] == canonical(t0 + 12 * S)
    assert meta(trs[1])["no_verifier_answered"] is True
    assert trs[1]["source"] == "system:verify_timeout" and trs[1]["at"] == canonical(t0 + 11 * S)


async def test_maintenance_window_opens_and_asks_nothing(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    t0 = base_ms()
    window = {"start": canonical(t0 - 60 * S), "end": canonical(t0 + 600 * S)}
    await pipeline.site(site, num_of_checks=2, maintenance=[window])
    for i in range(4):
        await pipeline.fail(site, t0 + i * S)
    # after the window the same failure opens: proof that the ones before were applied
    await pipeline.fail(site, t0 + 601 * S)
    trs = await pipeline.wait_transitions(site, 1)
    assert [(t["reason"], t["started_at"]) for t in trs] == [("opened", canonical(t0 + 601 * S))]
    assert pipeline.requests(site) == []


async def test_tls_warning_then_degraded_then_cleared(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, checks=["http", "tls_expiry"])
    t0 = base_ms()
    day = 86_400 * S

    async def tls(at: int, days_left: float, ok: bool) -> None:
        not_after = canonical(at + int(days_left * day))
        await pipeline.send(
            pipeline.result(site, ok, at, check_type="tls_expiry", tls_not_after=not_after)
        )

    await tls(t0, 20, False)
    await tls(t0 + 10 * S, 5, False)
    await tls(t0 + 20 * S, 90, True)
    trs = await pipeline.wait_transitions(site, 3)
    assert [(t["reason"], t["state_after"], t["severity_after"]) for t in trs] == [
        ("opened", "warning", 1),
        ("severity_escalation", "degraded", 2),
        ("probe_cleared", "resolved", None),
    ]
    assert len({t["event_id"] for t in trs}) == 1
    await pipeline.wait_stored(site, 3)
    [event] = pipeline.events(site)  # one row: a severity change is not a new event
    assert (event["check_type"], event["severity"], event["resolution_reason"]) == (
        "tls_expiry",
        2,
        "probe_cleared",
    )


async def test_dns_event_causes_the_http_event(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=5, checks=["dns", "http"])
    t0 = base_ms()
    await pipeline.send(pipeline.result(site, False, t0, check_type="dns", error="dns"))
    await pipeline.fail(site, t0 + 1 * S)
    trs = await pipeline.wait_transitions(site, 3)
    dns_open, http_open, linked = trs
    assert (dns_open["check_type"], http_open["check_type"]) == ("dns", "http")
    assert (linked["reason"], linked["event_id"]) == ("cause_linked", http_open["event_id"])
    assert linked["cause_event_id"] == dns_open["event_id"]
    await pipeline.wait_stored(site, 3)
    by_type = {e["check_type"]: e for e in pipeline.events(site)}
    assert by_type["http"]["cause_event_id"] == by_type["dns"]["id"]
    assert by_type["dns"]["cause_event_id"] is None
    # causes explain, they are no rollup: each closes on its own
    await pipeline.succeed(site, t0 + 2 * S, check_type="dns")
    trs = await pipeline.wait_transitions(site, 4)
    assert (trs[3]["reason"], trs[3]["event_id"]) == ("probe_cleared", dns_open["event_id"])
    await pipeline.succeed(site, t0 + 3 * S)
    trs = await pipeline.wait_transitions(site, 5)
    assert (trs[4]["reason"], trs[4]["event_id"]) == ("probe_cleared", http_open["event_id"])


async def test_duplicate_result_changes_nothing(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=5)
    t0 = base_ms()
    failure = pipeline.result(site, False, t0)
    await pipeline.send(failure, failure, failure)
    await pipeline.succeed(site, t0 + 1 * S)
    trs = await pipeline.wait_transitions(site, 2)
    assert reasons(trs) == ["opened", "probe_cleared"]
    await pipeline.wait_stored(site, 2)
    assert len(pipeline.events(site)) == 1


async def test_older_input_is_ignored(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=5)
    t0 = base_ms()
    await pipeline.fail(site, t0 + 10 * S)
    await pipeline.succeed(site, t0 + 5 * S)  # older than the failure: changes nothing
    await pipeline.succeed(site, t0 + 20 * S)
    trs = await pipeline.wait_transitions(site, 2)
    assert reasons(trs) == ["opened", "probe_cleared"]
    assert trs[1]["at"] == canonical(t0 + 20 * S)


async def test_operator_closes_an_event(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=5)
    t0 = base_ms()
    await pipeline.fail(site, t0)
    [opened] = await pipeline.wait_transitions(site, 1)
    command = {
        "kind": "command",
        "command_id": new_id("cmd"),
        "site_id": site,
        "command": "close_event",
        "event_id": opened["event_id"],
        "actor": "alice",
        "issued_at": canonical(t0 + 5 * S),
        "note": "known issue upstream",
        "ticket": "OPS-1",  # unknown: ignored
    }
    await pipeline.producer.send(pipeline.results_topic, site, command)
    trs = await pipeline.wait_transitions(site, 2)
    closing = trs[1]
    assert (closing["reason"], closing["source"], closing["state_after"]) == (
        "manual_override",
        "operator:alice",
        "resolved",
    )
    assert meta(closing)["note"] == "known issue upstream"
    await pipeline.wait_stored(site, 2)
    [event] = pipeline.events(site)
    assert event["resolution_reason"] == "manual_override"


async def test_paused_site_changes_nothing_until_resumed(pipeline: Pipeline) -> None:
    site, sentinel = pipeline.ids.isolated(2)
    await pipeline.site(sentinel, num_of_checks=5)
    # the first record the worker has of the site says paused: results wait for it
    await pipeline.site(site, num_of_checks=2, active=False)
    t0 = base_ms()
    for i in range(3):
        await pipeline.fail(site, t0 + i * S)
    await pipeline.barrier(sentinel, t0 + 3 * S)
    assert pipeline.transitions(site) == [] and pipeline.requests(site) == []
    await pipeline.site(site, num_of_checks=2, active=True)
    # nothing orders `sites` against `check-results`: fail until the worker has the
    # resumed settings (failures of a paused site change nothing, so retrying is safe)
    sent: list[str] = []
    for i in range(30):
        res = await pipeline.fail(site, t0 + (10 + i) * S)
        sent.append(res["observed_at"])
        try:
            trs = await pipeline.wait_transitions(site, 1, timeout_s=1)
            break
        except AssertionError:
            continue
    assert trs[0]["reason"] == "opened"
    assert trs[0]["started_at"] in {canonical(t0 + (10 + i) * S) for i in range(len(sent))}


async def test_deleted_site_changes_nothing_and_its_event_times_out(pipeline: Pipeline) -> None:
    site, sentinel = pipeline.ids.isolated(2)
    await pipeline.site(sentinel, num_of_checks=5)
    await pipeline.site(site, num_of_checks=5)
    t0 = base_ms()
    await pipeline.fail(site, t0)
    [opened] = await pipeline.wait_transitions(site, 1)
    await pipeline.wait_stored(site, 1)
    await pipeline.producer.send(pipeline.sites_topic, site, None)  # a tombstone deletes it
    await pipeline.db.wait(
        "SELECT site_id FROM jetpack_monitor_sites WHERE site_id = %s",
        site,
        until=lambda rows: rows == [],
        what="the sink deleting the site row",
    )
    # the sink deleted the site's events with it (ON DELETE CASCADE)
    assert pipeline.events(site) == []
    # the worker reads the tombstone on its own; nothing orders it against the results
    # below, so give it the time an operator would
    await asyncio.sleep(3.0)
    await pipeline.succeed(site, t0 + 2 * S)  # a deleted site's results change nothing
    await pipeline.barrier(sentinel, t0 + 3 * S)
    assert reasons(pipeline.transitions(site)) == ["opened"]
    # 24 h of stream time later the open event is closed by the clock
    day = 86_400 * S
    await pipeline.fail(site, t0 + day + 10 * S)
    trs = await pipeline.wait_transitions(site, 2)
    assert reasons(trs) == ["opened", "auto_timeout"]
    assert (trs[1]["event_id"], trs[1]["source"]) == (opened["event_id"], "system:auto_timeout")
    # 24 h after its last applied input (the deleted site's success changed nothing)
    assert trs[1]["at"] == canonical(t0 + day)
    await pipeline.barrier(sentinel, t0 + day + 20 * S)
    assert len(pipeline.transitions(site)) == 2
    # the sink took the closing transition of the deleted site's event in its stride:
    # nothing resurrected in MySQL, no dead letter
    assert pipeline.db.query("SELECT * FROM jetpack_monitor_sites WHERE site_id = %s", site) == []
    assert pipeline.events(site) == []
    assert pipeline.dead_letters("site-events", site) == []


async def test_reopen_at_once_after_close(pipeline: Pipeline) -> None:
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, num_of_checks=5)
    t0 = base_ms()
    await pipeline.fail(site, t0)
    await pipeline.succeed(site, t0 + 1 * S)
    await pipeline.fail(site, t0 + 1 * S)  # the same millisecond: a new event at once
    trs = await pipeline.wait_transitions(site, 3)
    assert reasons(trs) == ["opened", "probe_cleared", "opened"]
    assert trs[0]["event_id"] != trs[2]["event_id"]
    assert trs[2]["started_at"] == canonical(t0 + 1 * S)
    await pipeline.wait_stored(site, 3)
    events = pipeline.events(site)
    assert [(e["id"], e["ended_at"] is None) for e in events] == [
        (trs[0]["event_id"], False),
        (trs[2]["event_id"], True),
    ]
    row = pipeline.site_row(site)
    assert row["active_event_id"] == trs[2]["event_id"]


async def test_projection_is_the_worst_open_event(pipeline: Pipeline) -> None:
    """A TLS warning and an HTTP outage at once: the site shows the outage; when it
    clears, the warning; then up (docs/lifecycle.md, the site projection)."""
    [site] = pipeline.ids.isolated()
    await pipeline.site(site, checks=["http", "tls_expiry"], num_of_checks=1, peer_offline_limit=3)
    pipeline.plans[site] = [(v, False) for v in VERIFIERS]
    t0 = base_ms()
    not_after = canonical(t0 + 20 * 86_400 * S)
    await pipeline.send(
        pipeline.result(site, False, t0, check_type="tls_expiry", tls_not_after=not_after)
    )
    await pipeline.fail(site, t0 + 1 * S)
    trs = await pipeline.wait_transitions(site, 3)
    tls_id = trs[0]["event_id"]
    http_id = trs[1]["event_id"]
    assert reasons(trs) == ["opened", "opened", "verifier_confirmed"]
    rows = await pipeline.wait_stored(site, 3)
    row = pipeline.site_row(site)
    assert (row["current_state"], row["current_severity"], row["active_event_id"]) == (
        "down",
        4,
        http_id,
    )
    assert row["site_status"] == 2
    assert row["last_status_change"] == rows[-1]["at"]

    await pipeline.succeed(site, t0 + 5 * S)
    await pipeline.wait_stored(site, 4)
    row = pipeline.site_row(site)
    assert (row["current_state"], row["current_severity"], row["active_event_id"]) == (
        "warning",
        1,
        tls_id,
    )
    assert row["site_status"] == 1

    await pipeline.send(
        pipeline.result(
            site,
            True,
            t0 + 6 * S,
            check_type="tls_expiry",
            tls_not_after=canonical(t0 + 90 * 86_400 * S),
        )
    )
    await pipeline.wait_stored(site, 5)
    row = pipeline.site_row(site)
    assert (row["current_state"], row["current_severity"], row["active_event_id"]) == (
        "up",
        0,
        None,
    )


async def test_results_for_many_sites_sent_concurrently(pipeline: Pipeline) -> None:
    """A busy outside probe: many sites' results at once, from several producers."""

    sites = pipeline.ids.shared(120)
    await asyncio.gather(*(pipeline.site(s, num_of_checks=5, wait=False) for s in sites))
    await pipeline.db.wait(
        "SELECT COUNT(*) AS n FROM jetpack_monitor_sites WHERE site_id >= %s",
        min(sites),
        until=lambda rows: rows[0]["n"] >= len(sites),
        what="every bulk site stored",
    )
    await asyncio.sleep(1.0)
    t0 = base_ms()
    producers = [await Producer(pipeline.bootstrap).start() for _ in range(3)]
    try:
        rows: list[list[tuple[str, int, Any]]] = [[], [], []]
        for i, s in enumerate(sites):
            sequence = [
                pipeline.result(s, False, t0 + i),
                pipeline.result(s, False, t0 + 1 * S + i),
                pipeline.result(s, True, t0 + 2 * S + i),
            ]
            # one producer per site keeps its order; sites are spread over producers
            rows[i % 3] += [(pipeline.results_topic, s, r) for r in sequence]
        await asyncio.gather(*(p.send_many(r) for p, r in zip(producers, rows, strict=True)))
    finally:
        for p in producers:
            await p.stop()

    def all_cleared() -> bool:
        return all(len(pipeline.transitions(s)) >= 2 for s in sites)

    await pipeline.follower.wait(all_cleared, "every bulk site opened and cleared", 90)
    for s in sites:
        assert reasons(pipeline.transitions(s)) == ["opened", "probe_cleared"], s
    stored = await pipeline.db.wait(
        "SELECT site_id, COUNT(*) AS n FROM jetmon_event_transitions WHERE site_id IN %s"
        " GROUP BY site_id",
        tuple(sites),
        until=lambda r: len(r) == len(sites) and all(x["n"] == 2 for x in r),
        timeout_s=60,
        what="two stored transitions per bulk site",
    )
    assert len(stored) == len(sites)
    assert json.dumps(sorted(x["n"] for x in stored)) == json.dumps([2] * len(sites))
