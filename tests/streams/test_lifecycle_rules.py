"""One test per rule of docs/lifecycle.md, and per core invariant (2-6, 8, 10)."""

from __future__ import annotations

import msgspec

from sitewatch.streams import lifecycle, records
from sitewatch.streams.enums import CheckType, EventState, Reason, Severity
from sitewatch.streams.state import Config, SiteConfig

from .scenario import Run, at, close_cmd, result, tick

VERIFIERS = Config(verifiers=("eu", "us", "ap"))


def site(**kw: object) -> SiteConfig:
    return SiteConfig(site_id=1, url="https://example.test/", **kw)  # type: ignore[arg-type]


def test_rule_1_up_failure_opens_seems_down() -> None:
    run = Run()
    (opened,) = run.feed(result(False, 0))
    assert opened.reason is Reason.OPENED
    assert (opened.state_before, opened.severity_before) == (EventState.UP, 0)
    assert (opened.state_after, opened.severity_after) == (EventState.SEEMS_DOWN, 3)
    assert opened.started_at == at(0) == opened.at
    assert opened.seq == 1 and opened.source == "local"
    assert run.state is not None
    assert next(iter(run.state.open.values())).fail_count == 1


def test_rule_2_failures_count_then_verify_once() -> None:
    run = Run(config=VERIFIERS)
    run.feed(result(False, 0))
    assert run.feed(result(False, 30)) == []
    assert run.requests == []
    assert run.feed(result(False, 60)) == []
    (req,) = run.requests
    assert req.site_id == 1 and req.url == "https://example.test/"
    assert req.requested_at == at(60) and req.timeout_s == 10
    run.feed(result(False, 90), result(False, 120))
    assert len(run.requests) == 1  # asked once for this event


def test_rule_2_no_verifiers_promotes_unverified() -> None:
    run = Run()
    run.feed(result(False, 0), result(False, 30))
    (promoted,) = run.feed(result(False, 60))
    assert promoted.reason is Reason.VERIFIER_CONFIRMED
    assert promoted.metadata["unverified"] is True
    assert (promoted.state_after, promoted.severity_after) == (EventState.DOWN, 4)
    assert promoted.started_at == at(0)


def test_rule_3a_verifier_quorum_promotes_in_place() -> None:
    run = Run(config=VERIFIERS)
    run.feed(result(False, 0), result(False, 30), result(False, 60))
    assert run.answer(False, 61, "eu") == []
    assert run.answer(False, 62, "us") == []
    (promoted,) = run.answer(False, 63, "ap")
    assert promoted.reason is Reason.VERIFIER_CONFIRMED
    assert promoted.event_id == run.transitions[0].event_id
    assert promoted.started_at == at(0)
    assert promoted.metadata["answers"] == {"ap": False, "eu": False, "us": False}
    assert promoted.source == "verifier:ap"


def test_rule_3a_quorum_is_min_of_limit_and_answers() -> None:
    run = Run(config=VERIFIERS, site=site(peer_offline_limit=2))
    run.feed(result(False, 0), result(False, 30), result(False, 60))
    run.answer(False, 61, "eu")
    (promoted,) = run.answer(False, 62, "us")  # reached the limit: decide at once
    assert promoted.reason is Reason.VERIFIER_CONFIRMED
    assert promoted.metadata["quorum"] == 2


def test_rule_3b_verifiers_disagree_false_alarm() -> None:
    run = Run(config=VERIFIERS)
    run.feed(result(False, 0), result(False, 30), result(False, 60))
    run.answer(True, 61, "eu")
    run.answer(False, 62, "us")
    (closed,) = run.answer(True, 63, "ap")
    assert closed.reason is Reason.FALSE_ALARM is closed.resolution_reason
    assert closed.state_after is EventState.RESOLVED and closed.severity_after is None
    assert closed.ended_at == at(63)


def test_rule_3_verify_timeout_decides_with_answers_so_far() -> None:
    run = Run(config=VERIFIERS)
    run.feed(result(False, 0), result(False, 30), result(False, 60))
    run.answer(False, 61, "eu")
    assert run.feed(tick(70)) == []
    (promoted,) = run.feed(tick(76))  # verify_timeout = timeout_s + 5 = 15 s
    assert promoted.reason is Reason.VERIFIER_CONFIRMED
    assert promoted.at == at(75) and promoted.source == "system:verify_timeout"
    assert promoted.metadata["quorum"] == 1


def test_rule_3b_no_verifier_answered_false_alarm() -> None:
    run = Run(config=VERIFIERS)
    run.feed(result(False, 0), result(False, 30), result(False, 60))
    (closed,) = run.feed(tick(100))
    assert closed.reason is Reason.FALSE_ALARM
    assert closed.metadata["no_verifier_answered"] is True


def test_rule_4_seems_down_success_probe_cleared() -> None:
    run = Run()
    run.feed(result(False, 0))
    (closed,) = run.feed(result(True, 30))
    assert closed.reason is Reason.PROBE_CLEARED
    assert closed.state_before is EventState.SEEMS_DOWN
    assert run.open_events == 0


def test_rule_5_down_success_verifier_cleared() -> None:
    run = Run()
    run.feed(result(False, 0), result(False, 30), result(False, 60))
    (closed,) = run.feed(result(True, 90))
    assert closed.reason is Reason.VERIFIER_CLEARED
    assert (closed.state_before, closed.severity_before) == (EventState.DOWN, 4)


def test_rule_6_operator_close_manual_override() -> None:
    run = Run()
    (opened,) = run.feed(result(False, 0))
    (closed,) = run.feed(close_cmd(opened.event_id, 10))
    assert closed.reason is Reason.MANUAL_OVERRIDE
    assert closed.source == "operator:alice"
    assert closed.metadata["note"] == "known issue"
    assert run.feed(close_cmd(opened.event_id, 11)) == []  # closed already


def test_rule_7_no_input_for_long_auto_timeout() -> None:
    run = Run(config=Config(auto_timeout_ms=3_600_000))
    run.feed(result(False, 0))
    assert run.feed(tick(3599)) == []
    (closed,) = run.feed(tick(4000))
    assert closed.reason is Reason.AUTO_TIMEOUT
    assert closed.at == at(3600) and closed.source == "system:auto_timeout"


def test_rule_7_auto_timeout_closes_events_of_deleted_sites() -> None:
    run = Run(config=Config(auto_timeout_ms=3_600_000))
    run.feed(result(False, 0))
    run.site = None
    (closed,) = run.feed(tick(3601))
    assert closed.reason is Reason.AUTO_TIMEOUT


def test_rule_8_duplicate_result_changes_nothing() -> None:
    run = Run()
    first = result(False, 0, result_id="same")
    run.feed(first)
    assert run.feed(result(False, 0, result_id="same")) == []
    assert run.state is not None
    assert next(iter(run.state.open.values())).fail_count == 1


def test_rule_8_older_input_changes_nothing() -> None:
    run = Run()
    run.feed(result(True, 100))
    assert run.feed(result(False, 50)) == []
    assert run.open_events == 0


def test_tls_expiry_warning_then_degraded_is_one_event() -> None:
    run = Run()
    (opened,) = run.feed(result(True, 0, check_type=CheckType.TLS_EXPIRY, tls_days=20))
    assert (opened.state_after, opened.severity_after) == (EventState.WARNING, 1)
    assert run.feed(result(True, 10, check_type=CheckType.TLS_EXPIRY, tls_days=19)) == []
    (esc,) = run.feed(result(True, 20, check_type=CheckType.TLS_EXPIRY, tls_days=5))
    assert esc.reason is Reason.SEVERITY_ESCALATION and esc.event_id == opened.event_id
    assert (esc.state_after, esc.severity_after) == (EventState.DEGRADED, 2)
    (de,) = run.feed(result(True, 30, check_type=CheckType.TLS_EXPIRY, tls_days=25))
    assert de.reason is Reason.SEVERITY_DEESCALATION
    (closed,) = run.feed(result(True, 40, check_type=CheckType.TLS_EXPIRY, tls_days=90))
    assert closed.reason is Reason.PROBE_CLEARED


def test_tls_expiry_far_away_opens_nothing() -> None:
    run = Run()
    assert run.feed(result(True, 0, check_type=CheckType.TLS_EXPIRY, tls_days=31)) == []


def test_causal_link_dns_causes_http() -> None:
    run = Run()
    (dns,) = run.feed(result(False, 0, check_type=CheckType.DNS))
    opened, linked = run.feed(result(False, 1, check_type=CheckType.HTTP))
    assert opened.reason is Reason.OPENED and linked.reason is Reason.CAUSE_LINKED
    assert linked.cause_event_id == dns.event_id
    assert opened.cause_event_id is None  # the link is its own change: cause_linked
    assert run.open_events == 2


def test_causal_link_tcp_causes_http() -> None:
    run = Run()
    (tcp,) = run.feed(result(False, 0, check_type=CheckType.TCP))
    _, linked = run.feed(result(False, 1, check_type=CheckType.HTTP))
    assert linked.cause_event_id == tcp.event_id


def test_maintenance_window_opens_nothing_but_success_closes() -> None:
    window = (lifecycle.input_time(result(True, 100)), lifecycle.input_time(result(True, 200)))
    run = Run(site=site(maintenance=(window,)))
    run.feed(result(False, 0))
    assert run.feed(result(False, 150), result(False, 160)) == []  # no promotion inside
    assert run.requests == []
    (closed,) = run.feed(result(True, 170))  # an open event may still close
    assert closed.reason is Reason.PROBE_CLEARED
    assert run.feed(result(False, 180)) == []  # and nothing opens
    assert run.open_events == 0


def test_paused_site_results_change_nothing() -> None:
    run = Run(site=site(active=False))
    assert run.feed(result(False, 0), result(False, 30), result(False, 60)) == []
    assert run.open_events == 0


def test_deleted_site_results_change_nothing() -> None:
    run = Run(site=None)
    assert run.feed(result(False, 0)) == []


def test_several_open_events_of_different_tuples() -> None:
    run = Run()
    run.feed(result(True, 0, check_type=CheckType.TLS_EXPIRY, tls_days=10))
    run.feed(result(False, 1))
    run.feed(result(False, 2, endpoint_id=7))
    assert run.open_events == 3


def test_redelivered_input_reemits_what_it_produced() -> None:
    run = Run()
    run.feed(result(False, 0))
    settings = lifecycle.SiteContext(1, run.site, run.config)
    state, effects = lifecycle.apply(run.state, result(False, 0), settings, position=1)
    assert effects.transitions == run.transitions
    state, effects = lifecycle.apply(state, result(False, 5), settings, position=1)
    assert effects.transitions == run.transitions  # position decides, not content


# -- invariants of docs/lifecycle.md that concern the core -------------------------


def test_invariant_2_every_change_writes_exactly_one_transition() -> None:
    run = Run()
    run.feed(result(False, 0), result(False, 30), result(False, 60), result(True, 90))
    assert run.reasons == ["opened", "verifier_confirmed", "verifier_cleared"]
    assert [t.seq for t in run.transitions] == [1, 2, 3]
    assert len({t.transition_id for t in run.transitions}) == 3


def test_invariant_3_replay_gives_byte_identical_transitions() -> None:
    inputs = [
        result(False, 0),
        result(False, 30),
        result(False, 60),
        result(True, 90),
        result(True, 1, check_type=CheckType.TLS_EXPIRY, tls_days=3),
    ]
    a, b = Run(), Run()
    a.feed(*inputs)
    b.feed(*inputs)
    assert [records.encode(t) for t in a.transitions] == [records.encode(t) for t in b.transitions]


def test_invariant_4_same_result_twice_one_event_one_opened() -> None:
    run = Run()
    dup = result(False, 0)
    run.feed(dup, msgspec.structs.replace(dup))
    assert run.reasons == ["opened"]


def test_invariant_5_false_alarm_closes_seems_down() -> None:
    run = Run(config=VERIFIERS)
    run.feed(result(False, 0), result(False, 30), result(False, 60))
    for name in ("eu", "us", "ap"):
        run.answer(True, 61, name)
    closed = run.transitions[-1]
    assert (closed.reason, closed.state_before) == (Reason.FALSE_ALARM, EventState.SEEMS_DOWN)


def test_invariant_6_severity_change_is_a_transition_not_an_event() -> None:
    run = Run()
    run.feed(
        result(True, 0, check_type=CheckType.TLS_EXPIRY, tls_days=20),
        result(True, 10, check_type=CheckType.TLS_EXPIRY, tls_days=2),
    )
    assert len({t.event_id for t in run.transitions}) == 1
    assert run.reasons == ["opened", "severity_escalation"]
    assert run.transitions[-1].severity_after == Severity.DEGRADED


def test_invariant_8_after_close_same_tuple_reopens_at_once() -> None:
    run = Run()
    run.feed(result(False, 0), result(True, 1), result(False, 2))
    assert run.reasons == ["opened", "probe_cleared", "opened"]
    assert run.transitions[0].event_id != run.transitions[2].event_id


def test_invariant_10_nothing_opens_or_promotes_in_maintenance() -> None:
    start, end = lifecycle.input_time(result(True, 50)), lifecycle.input_time(result(True, 500))
    run = Run(config=VERIFIERS, site=site(maintenance=((start, end),)))
    run.feed(result(False, 0), result(False, 30), result(False, 40))  # verify asked at 40
    run.answer(False, 60, "eu")
    run.answer(False, 61, "us")
    assert run.answer(False, 62, "ap") == []  # quorum inside the window: not promoted
    run.feed(result(False, 100), tick(200))
    assert "verifier_confirmed" not in run.reasons
    run2 = Run(config=VERIFIERS, site=site(maintenance=((start, end),)))
    assert run2.feed(result(False, 60), result(False, 70), result(False, 80)) == []
    assert run2.requests == []
