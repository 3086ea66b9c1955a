"""The notifier's decisions without a database: scripted cases and properties.

`Ledger` is the alerts table in memory, read as the notifier reads it (`_prior`: a
recovery looks up its event's down, a down the site's latest notified down at or
before it) and fed as the notifier feeds it (a decided `transition_id` is skipped).
"""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.notify.decide import (
    DEFAULT_COOLDOWN_MINUTES,
    Decision,
    Kind,
    Prior,
    SiteRules,
    decide,
    kind_of,
    site_rules,
)
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import EventState, Reason
from sitewatch.streams.state import SiteConfig

from .test_notify import MIN, T0, outage, transition

S, D, U, R = EventState.SEEMS_DOWN, EventState.DOWN, EventState.UP, EventState.RESOLVED


class Ledger:
    """`sitewatch_notify_alerts` in memory: transition_id -> (tr, kind, decision)."""

    def __init__(self) -> None:
        self.alerts: dict[str, tuple[records.Transition, Kind, Decision]] = {}

    def prior(self, kind: Kind, tr: records.Transition, at: int) -> Prior:
        if kind is Kind.RECOVERY:
            downs = [
                d
                for o, k, d in self.alerts.values()
                if k is Kind.DOWN and o.event_id == tr.event_id
            ]
            return Prior(down_decision=downs[0] if downs else None)
        notified = [
            timefmt.to_ms(o.at)
            for o, k, d in self.alerts.values()
            if o.site_id == tr.site_id
            and k is Kind.DOWN
            and d is Decision.NOTIFY
            and timefmt.to_ms(o.at) <= at
        ]
        return Prior(last_notified_down_ms=max(notified, default=None))

    def feed(self, stream: list[records.Transition], rules: dict[int, SiteRules]) -> None:
        for tr in stream:
            kind = kind_of(tr)
            if kind is None or tr.transition_id in self.alerts:
                continue  # not a notification, or decided already: never twice
            at = timefmt.to_ms(tr.at)
            site = rules.get(tr.site_id, SiteRules())
            self.alerts[tr.transition_id] = (
                tr,
                kind,
                decide(kind, at, site, self.prior(kind, tr, at)),
            )

    def decisions(self) -> dict[str, Decision]:
        return {tid: d for tid, (_, _, d) in self.alerts.items()}


def windows(*spans: tuple[int, int]) -> SiteRules:
    config = SiteConfig(site_id=1, url="http://one/", maintenance=spans)
    return SiteRules(config)


# -- scripted ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "before", "after", "kind"),
    [
        (Reason.OPENED, U, S, None),
        (Reason.VERIFIER_CONFIRMED, S, D, Kind.DOWN),
        (Reason.VERIFIER_CLEARED, D, R, Kind.RECOVERY),
        (Reason.MANUAL_OVERRIDE, D, R, Kind.RECOVERY),
        (Reason.AUTO_TIMEOUT, D, R, Kind.RECOVERY),
        (Reason.FALSE_ALARM, S, R, None),
        (Reason.PROBE_CLEARED, S, R, None),
        (Reason.MANUAL_OVERRIDE, S, R, None),  # closing a seems_down: no down was sent
    ],
)
def test_which_transitions_notify(
    reason: Reason, before: EventState, after: EventState, kind: Kind | None
) -> None:
    tr = transition(1, "e", 2, reason, before, after, T0 + MIN, T0)
    assert kind_of(tr) is kind


def test_a_first_down_notifies_and_the_next_within_the_cooldown_does_not() -> None:
    site = SiteRules()
    assert decide(Kind.DOWN, T0, site, Prior()) is Decision.NOTIFY
    soon = Prior(last_notified_down_ms=T0)
    assert decide(Kind.DOWN, T0 + 29 * MIN, site, soon) is Decision.COOLDOWN
    assert decide(Kind.DOWN, T0 + 30 * MIN, site, soon) is Decision.NOTIFY  # 30 min default
    assert decide(Kind.DOWN, T0 + 5 * MIN, SiteRules(None, 5), soon) is Decision.NOTIFY
    assert decide(Kind.DOWN, T0, SiteRules(None, 0), soon) is Decision.NOTIFY  # no cooldown


def test_a_maintenance_window_mutes_both_kinds_and_is_half_open() -> None:
    site = windows((T0, T0 + 10 * MIN))
    for kind in Kind:
        assert decide(kind, T0, site, Prior()) is Decision.MUTED_MAINTENANCE
        assert decide(kind, T0 + 10 * MIN - 1, site, Prior()) is Decision.MUTED_MAINTENANCE
        assert decide(kind, T0 + 10 * MIN, site, Prior()) is Decision.NOTIFY
        assert decide(kind, T0 - 1, site, Prior()) is Decision.NOTIFY
    told = Prior(down_decision=Decision.NOTIFY)
    assert decide(Kind.RECOVERY, T0 + MIN, site, told) is Decision.MUTED_MAINTENANCE


@pytest.mark.parametrize(
    ("down", "want"),
    [
        (None, Decision.NOTIFY),  # its down was never seen (decided before this notifier)
        (Decision.NOTIFY, Decision.NOTIFY),
        (Decision.COOLDOWN, Decision.NO_DOWN_ALERT),
        (Decision.MUTED_MAINTENANCE, Decision.NO_DOWN_ALERT),
        ("cooldown", Decision.NO_DOWN_ALERT),  # as the table's column holds it
        ("notify", Decision.NOTIFY),
    ],
)
def test_a_recovery_follows_its_down(down: str | None, want: Decision) -> None:
    assert decide(Kind.RECOVERY, T0, SiteRules(), Prior(down_decision=down)) is want


def test_a_recovery_is_never_held_back_by_the_cooldown() -> None:
    just_now = Prior(down_decision=Decision.NOTIFY, last_notified_down_ms=T0)
    assert decide(Kind.RECOVERY, T0, SiteRules(), just_now) is Decision.NOTIFY


def test_site_rules_from_the_stored_row() -> None:
    assert site_rules(None) == SiteRules(None, DEFAULT_COOLDOWN_MINUTES)
    window = [{"start": timefmt.from_ms(T0), "end": timefmt.from_ms(T0 + MIN)}]
    row = SimpleNamespace(site_id=3, url=None, maintenance=window, alert_cooldown_minutes=7)
    rules = site_rules(row)
    assert rules.cooldown_minutes == 7 and rules.in_maintenance(T0)
    assert not rules.in_maintenance(T0 + MIN)
    broken = SimpleNamespace(
        site_id=3, url="x", maintenance=[{"start": 1}], alert_cooldown_minutes=9
    )
    assert site_rules(broken) == SiteRules(None, 9)  # unusable windows: none, and logged


def test_the_integration_scenario_decides_as_the_notifier_did() -> None:
    """tests/notify/test_notify.py's stream, decided in memory: the same decisions."""
    site1 = (
        outage(1, "a", T0, T0 + 1 * MIN, T0 + 5 * MIN)
        + outage(1, "b", T0 + 10 * MIN, T0 + 11 * MIN, T0 + 12 * MIN)
        + outage(1, "c", T0 + 50 * MIN, T0 + 51 * MIN, T0 + 52 * MIN)
    )
    site2 = outage(2, "x", T0, None, T0 + 1 * MIN)
    site3 = outage(3, "m", T0, T0 + 1 * MIN, T0 + 40 * MIN)
    ledger = Ledger()
    stream = site1 + site2 + site3
    ledger.feed(stream + stream[:4], {3: windows((T0 + 30 * MIN, T0 + 120 * MIN))})
    assert ledger.decisions() == {
        site1[1].transition_id: Decision.NOTIFY,
        site1[2].transition_id: Decision.NOTIFY,
        site1[4].transition_id: Decision.COOLDOWN,
        site1[5].transition_id: Decision.NO_DOWN_ALERT,
        site1[7].transition_id: Decision.NOTIFY,
        site1[8].transition_id: Decision.NOTIFY,
        site3[1].transition_id: Decision.NOTIFY,
        site3[2].transition_id: Decision.MUTED_MAINTENANCE,
    }


# -- properties ----------------------------------------------------------------------------

SITES = (1, 2, 3)


#: a stream of transitions, and the rules of each site in it
Case = tuple[list[records.Transition], dict[int, SiteRules]]


@st.composite
def streams(draw: st.DrawFn) -> Case:
    """Outages of a few sites (each site's in stream order, the sites interleaved), with
    maintenance windows and cooldowns of their own."""
    per_site: list[list[records.Transition]] = []
    rules: dict[int, SiteRules] = {}
    for site in SITES:
        spans = draw(
            st.lists(
                st.tuples(st.integers(0, 300), st.integers(1, 60)).map(
                    lambda p: (T0 + p[0] * MIN, T0 + (p[0] + p[1]) * MIN)
                ),
                max_size=2,
            )
        )
        config = SiteConfig(site_id=site, url="http://s/", maintenance=tuple(spans))
        rules[site] = SiteRules(config, draw(st.integers(0, 60)))
        at, trs = T0, []
        for n in range(draw(st.integers(0, 6))):
            at += draw(st.integers(0, 40)) * MIN
            down = None if draw(st.booleans()) else at + draw(st.integers(0, 5)) * MIN
            end = (down if down is not None else at) + draw(st.integers(0, 30)) * MIN
            trs += outage(site, f"e{n}", at, down, end)
            at = end
        per_site.append(trs)
    rng = random.Random(draw(st.integers(0, 2**32)))
    stream: list[records.Transition] = []
    while any(per_site):
        stream.append(rng.choice([s for s in per_site if s]).pop(0))
    return stream, rules


def decided(case: Case) -> list[tuple[records.Transition, Kind, Decision]]:
    ledger = Ledger()
    ledger.feed(*case)
    return list(ledger.alerts.values())


@settings(max_examples=150, deadline=None)
@given(streams())
def test_inside_a_maintenance_window_nothing_notifies(
    case: Case,
) -> None:
    rules = case[1]
    for tr, _, decision in decided(case):
        muted = rules[tr.site_id].in_maintenance(timefmt.to_ms(tr.at))
        assert (decision is Decision.MUTED_MAINTENANCE) is muted


@settings(max_examples=150, deadline=None)
@given(streams())
def test_a_recovery_is_sent_only_for_a_down_that_was(
    case: Case,
) -> None:
    alerts = decided(case)
    downs = {tr.event_id: d for tr, k, d in alerts if k is Kind.DOWN}
    for tr, kind, decision in alerts:
        if kind is Kind.RECOVERY:
            assert decision is not Decision.COOLDOWN  # the cooldown is for downs only
            if decision is Decision.NOTIFY:
                assert downs[tr.event_id] is Decision.NOTIFY
            elif decision is Decision.NO_DOWN_ALERT:
                assert downs[tr.event_id] is not Decision.NOTIFY
        else:
            assert decision is not Decision.NO_DOWN_ALERT


@settings(max_examples=150, deadline=None)
@given(streams())
def test_notified_downs_of_a_site_are_a_cooldown_apart(
    case: Case,
) -> None:
    rules = case[1]
    alerts = decided(case)
    for site in SITES:
        cooldown_ms = rules[site].cooldown_minutes * MIN
        notified = [
            timefmt.to_ms(tr.at)
            for tr, k, d in alerts
            if tr.site_id == site and k is Kind.DOWN and d is Decision.NOTIFY
        ]
        assert all(b - a >= cooldown_ms for a, b in itertools.pairwise(notified))
        for tr, _, d in alerts:
            if tr.site_id == site and d is Decision.COOLDOWN:
                at = timefmt.to_ms(tr.at)
                assert any(0 <= at - n < cooldown_ms for n in notified)


@settings(max_examples=100, deadline=None)
@given(streams(), st.lists(st.integers(1, 8), min_size=1), st.sets(st.integers(0, 30)))
def test_redelivery_crashes_and_batching_decide_the_same(
    case: Case,
    sizes: list[int],
    crashed: set[int],
) -> None:
    """Batches of any size; a crash loses a batch's decisions (rolled back with its
    offsets), so it is read again; the whole topic is then redelivered: every
    transition is decided once, exactly as a single pass decides it."""
    stream, rules = case
    once = Ledger()
    once.feed(stream, rules)
    ledger, pos, n = Ledger(), 0, 0
    while pos < len(stream):
        batch = stream[pos : pos + sizes[n % len(sizes)]]
        lost = Ledger()
        if n in crashed:
            lost.alerts = dict(ledger.alerts)
            lost.feed(batch, rules)  # decided, then the transaction never committed
        ledger.feed(batch, rules)  # read again from the stored offsets
        if n in crashed:
            assert lost.decisions() == ledger.decisions()
        pos, n = pos + len(batch), n + 1
    before = ledger.decisions()
    ledger.feed(stream, rules)  # everything redelivered
    assert ledger.decisions() == before == once.decisions()
