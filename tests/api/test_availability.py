"""The availability report, policy `sitewatch-1`: its laws (hypothesis) and scripted cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.api.availability import EventSpan, Report, report, timeline
from sitewatch.streams.enums import CheckType, Severity

H = 3_600_000
DAY = 24 * H
T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)

# -- strategies ---------------------------------------------------------------------------

SPAN = 200  # small integer times so a per-millisecond oracle is cheap

times = st.integers(min_value=0, max_value=SPAN)


@st.composite
def event_spans(draw: st.DrawFn, *, check: CheckType | None = None) -> EventSpan:
    check_type = check or draw(st.sampled_from(list(CheckType)))
    if check_type is CheckType.TLS_EXPIRY:
        severity = draw(st.sampled_from([Severity.WARNING, Severity.DEGRADED]))
    else:
        severity = draw(st.sampled_from([Severity.SEEMS_DOWN, Severity.DOWN]))
    start = draw(times)
    length = draw(st.none() | st.integers(min_value=0, max_value=SPAN // 2))
    return EventSpan(
        event_id=draw(st.uuids()).hex,
        check_type=check_type,
        severity=int(severity),
        started_ms=start,
        ended_ms=None if length is None else start + length,
    )


windows = st.lists(st.tuples(times, times).map(sorted).map(tuple), max_size=4)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, object]:
    start = draw(times)
    end = draw(st.integers(min_value=start, max_value=SPAN + 100))
    return {
        "events": draw(st.lists(event_spans(), max_size=8)),
        "maintenance": draw(windows),
        "start_ms": start,
        "end_ms": end,
        "site_created_ms": draw(st.none() | times),
        "first_event_ms": draw(st.none() | times),
    }


def run(case: dict[str, object], **changes: object) -> Report:
    args = {**case, **changes}
    return report(
        args["events"],  # type: ignore[arg-type]
        args["maintenance"],  # type: ignore[arg-type]
        args["start_ms"],  # type: ignore[arg-type]
        args["end_ms"],  # type: ignore[arg-type]
        site_created_ms=args["site_created_ms"],  # type: ignore[arg-type]
        first_event_ms=args["first_event_ms"],  # type: ignore[arg-type]
    )


def oracle(case: dict[str, object]) -> dict[str, int]:
    """Classify every millisecond of the window one by one: the definition, literally."""
    events: list[EventSpan] = case["events"]  # type: ignore[assignment]
    maint: list[tuple[int, int]] = case["maintenance"]  # type: ignore[assignment]
    start: int = case["start_ms"]  # type: ignore[assignment]
    end: int = case["end_ms"]  # type: ignore[assignment]
    known = [t for t in (case["site_created_ms"], case["first_event_ms"]) if t is not None]
    known_since: int = min(known) if known else end  # type: ignore[type-var,assignment]
    counts = {"unknown": 0, "maintenance": 0, "down": 0, "seems_down": 0}

    def covers(ev: EventSpan, t: int) -> bool:
        return ev.started_ms <= t < (end if ev.ended_ms is None else ev.ended_ms)

    avail = {CheckType.HTTP, CheckType.TCP, CheckType.DNS}
    for t in range(start, end):
        if t < known_since:
            counts["unknown"] += 1
        elif any(a <= t < b for a, b in maint):
            counts["maintenance"] += 1
        elif any(e.check_type in avail and e.severity >= 4 and covers(e, t) for e in events):
            counts["down"] += 1
        elif any(e.check_type in avail and e.severity == 3 and covers(e, t) for e in events):
            counts["seems_down"] += 1
    return counts


# -- laws ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(cases())
def test_report_classifies_every_millisecond_as_the_definition_does(
    case: dict[str, object],
) -> None:
    got = run(case)
    want = oracle(case)
    assert (got.unknown_ms, got.maintenance_ms, got.down_ms, got.seems_down_ms) == (
        want["unknown"],
        want["maintenance"],
        want["down"],
        want["seems_down"],
    )
    # and each incident's own downtime: its milliseconds in the window that are neither
    # unknown nor maintenance
    start: int = case["start_ms"]  # type: ignore[assignment]
    end: int = case["end_ms"]  # type: ignore[assignment]
    known = [t for t in (case["site_created_ms"], case["first_event_ms"]) if t is not None]
    known_since: int = min(known) if known else end  # type: ignore[type-var,assignment]
    maint: list[tuple[int, int]] = case["maintenance"]  # type: ignore[assignment]
    for inc in got.incidents:
        until = end if inc.ended_ms is None else inc.ended_ms
        own = sum(
            1
            for t in range(max(start, inc.started_ms), min(end, until))
            if t >= known_since and not any(a <= t < b for a, b in maint)
        )
        assert inc.down_ms == own, inc


@settings(max_examples=300, deadline=None)
@given(cases(), st.data())
def test_a_kept_timeline_counts_as_its_events_would(
    case: dict[str, object], data: st.DataObject
) -> None:
    """What the API keeps of a site's closed events gives the report they would."""
    events: list[EventSpan] = case["events"]  # type: ignore[assignment]
    closed = [e for e in events if e.ended_ms is not None]
    kept = data.draw(st.lists(st.sampled_from(closed), unique=True)) if closed else []
    rest = [e for e in events if e not in kept]
    got = report(
        rest,
        case["maintenance"],  # type: ignore[arg-type]
        case["start_ms"],  # type: ignore[arg-type]
        case["end_ms"],  # type: ignore[arg-type]
        site_created_ms=case["site_created_ms"],  # type: ignore[arg-type]
        first_event_ms=case["first_event_ms"],  # type: ignore[arg-type]
        kept=timeline(kept),
    )
    assert got == run(case)


def test_a_timeline_holds_closed_events_only() -> None:
    with pytest.raises(ValueError, match="open"):
        timeline([EventSpan("e", CheckType.HTTP, 4, 0, None)])


@settings(max_examples=150, deadline=None)
@given(cases())
def test_downtime_never_exceeds_the_measured_time(case: dict[str, object]) -> None:
    r = run(case)
    assert 0 <= r.down_ms <= r.measured_ms
    assert 0 <= r.down_ms + r.seems_down_ms <= r.measured_ms
    assert r.measured_ms <= r.end_ms - r.start_ms
    assert min(r.down_ms, r.seems_down_ms, r.maintenance_ms, r.unknown_ms, r.up_ms) >= 0
    if r.uptime_ratio is None:
        assert r.measured_ms == 0
    else:
        assert 0.0 <= r.uptime_ratio <= 1.0
    for incident in r.incidents:
        assert 0 <= incident.down_ms <= r.down_ms


@settings(max_examples=100, deadline=None)
@given(cases(), st.data())
def test_overlapping_events_count_once(case: dict[str, object], data: st.DataObject) -> None:
    events: list[EventSpan] = case["events"]  # type: ignore[assignment]
    base = run(case)
    # the same events twice, and a down event inside an existing down event's span
    doubled = run(case, events=events + events)
    assert doubled.down_ms == base.down_ms
    assert doubled.seems_down_ms == base.seems_down_ms
    downs = [e for e in events if e.counts_as_down and e.ended_ms is not None]
    if downs:
        outer = data.draw(st.sampled_from(downs))
        assert outer.ended_ms is not None
        a = data.draw(st.integers(outer.started_ms, outer.ended_ms))
        b = data.draw(st.integers(a, outer.ended_ms))
        inner = EventSpan("inner", CheckType.TCP, Severity.DOWN, a, b)
        assert run(case, events=[*events, inner]).down_ms == base.down_ms
    single = sum(run(case, events=[e]).down_ms for e in events)
    assert base.down_ms <= single


@settings(max_examples=100, deadline=None)
@given(cases(), st.lists(event_spans(check=CheckType.TLS_EXPIRY), max_size=4), st.data())
def test_false_alarms_and_tls_events_never_count_as_downtime(
    case: dict[str, object], tls: list[EventSpan], data: st.DataObject
) -> None:
    events: list[EventSpan] = case["events"]  # type: ignore[assignment]
    false_alarms = data.draw(
        st.lists(event_spans(check=CheckType.HTTP), max_size=4).map(
            lambda evs: [
                EventSpan(e.event_id, e.check_type, Severity.SEEMS_DOWN, e.started_ms, e.ended_ms)
                for e in evs
            ]
        )
    )
    base = run(case)
    more = run(case, events=[*events, *tls, *false_alarms])
    assert more.down_ms == base.down_ms
    assert more.uptime_ratio == base.uptime_ratio
    assert [i.event_id for i in more.incidents] == [i.event_id for i in base.incidents]
    assert run(case, events=[*tls, *false_alarms]).down_ms == 0


@settings(max_examples=150, deadline=None)
@given(cases(), st.data())
def test_splitting_a_window_in_two_adds_up(case: dict[str, object], data: st.DataObject) -> None:
    start: int = case["start_ms"]  # type: ignore[assignment]
    end: int = case["end_ms"]  # type: ignore[assignment]
    mid = data.draw(st.integers(start, end))
    whole, left, right = run(case), run(case, end_ms=mid), run(case, start_ms=mid)

    def figures(r: Report) -> tuple[int, int, int, int, int]:
        return (r.down_ms, r.seems_down_ms, r.maintenance_ms, r.unknown_ms, r.up_ms)

    assert tuple(map(sum, zip(figures(left), figures(right), strict=True))) == figures(whole)


# -- scripted -----------------------------------------------------------------------------


def _day(events: list[EventSpan], maintenance: list[tuple[int, int]] | None = None) -> Report:
    """One day from T0 for a site known long before."""
    return report(
        events,
        maintenance or [],
        T0,
        T0 + DAY,
        site_created_ms=T0 - 30 * DAY,
        first_event_ms=None,
    )


def test_incident_confirmed_then_recovered_counts_from_the_first_failure() -> None:
    # opened seems_down at 10:00, verifier_confirmed (promoted in place, started_at kept),
    # verifier_cleared at 10:30: severity 4 kept on the closed row
    ev = EventSpan("e1", CheckType.HTTP, Severity.DOWN, T0 + 10 * H, T0 + 10 * H + 1_800_000)
    r = _day([ev])
    assert r.down_ms == 1_800_000
    assert r.seems_down_ms == 0
    assert r.uptime_ratio == pytest.approx(1 - 1800 / 86_400)
    assert [(i.event_id, i.down_ms) for i in r.incidents] == [("e1", 1_800_000)]
    assert r.mttr_ms == 1_800_000


def test_false_alarm_is_reported_as_seems_down_not_downtime() -> None:
    ev = EventSpan("fa", CheckType.HTTP, Severity.SEEMS_DOWN, T0 + H, T0 + H + 90_000)
    r = _day([ev])
    assert r.down_ms == 0
    assert r.seems_down_ms == 90_000
    assert r.uptime_ratio == 1.0
    assert r.incidents == ()
    assert r.mttr_ms is None


def test_maintenance_leaves_the_denominator_and_is_not_downtime() -> None:
    # down 02:00-04:00, maintenance 03:00-05:00: one hour of downtime, two of maintenance
    ev = EventSpan("m", CheckType.TCP, Severity.DOWN, T0 + 2 * H, T0 + 4 * H)
    r = _day([ev], [(T0 + 3 * H, T0 + 5 * H)])
    assert r.maintenance_ms == 2 * H
    assert r.down_ms == H
    assert r.measured_ms == 22 * H
    assert r.uptime_ratio == pytest.approx(1 - 1 / 22)
    assert r.incidents[0].down_ms == H


def test_event_still_open_at_the_window_end_counts_until_the_end() -> None:
    ev = EventSpan("open", CheckType.DNS, Severity.DOWN, T0 + 23 * H, None)
    r = _day([ev])
    assert r.down_ms == H
    assert r.incidents[0].ended_ms is None
    assert r.mttr_ms is None  # an open incident has no repair time yet


def test_event_closed_after_the_window_counts_to_the_window_end_and_not_in_mttr() -> None:
    ev = EventSpan("late", CheckType.HTTP, Severity.DOWN, T0 + 23 * H, T0 + 25 * H)
    r = _day([ev])
    assert r.down_ms == H
    assert r.mttr_ms is None


def test_time_before_the_site_was_known_is_unknown_not_uptime() -> None:
    ev = EventSpan("e", CheckType.HTTP, Severity.DOWN, T0 + 12 * H, T0 + 13 * H)
    r = report([ev], [], T0, T0 + DAY, site_created_ms=T0 + 18 * H, first_event_ms=T0 + 12 * H)
    assert r.unknown_ms == 12 * H  # known from the earlier of created_at and first event
    assert r.down_ms == H
    assert r.uptime_ratio == pytest.approx(1 - 1 / 12)


def test_site_unknown_for_the_whole_window_has_no_ratio() -> None:
    r = report([], [], T0, T0 + DAY, site_created_ms=T0 + 2 * DAY, first_event_ms=None)
    assert r.unknown_ms == DAY
    assert r.uptime_ratio is None


def test_tls_expiry_event_never_counts() -> None:
    ev = EventSpan("tls", CheckType.TLS_EXPIRY, Severity.DEGRADED, T0, None)
    r = _day([ev])
    assert (r.down_ms, r.seems_down_ms, r.uptime_ratio) == (0, 0, 1.0)


def test_overlapping_http_and_tcp_outages_count_once() -> None:
    a = EventSpan("a", CheckType.TCP, Severity.DOWN, T0 + H, T0 + 3 * H)
    b = EventSpan("b", CheckType.HTTP, Severity.DOWN, T0 + 2 * H, T0 + 4 * H)
    r = _day([a, b])
    assert r.down_ms == 3 * H
    assert [i.down_ms for i in r.incidents] == [2 * H, 2 * H]


def test_window_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError):
        report([], [], 10, 5, site_created_ms=0, first_event_ms=None)
