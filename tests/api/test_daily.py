"""The status pages' daily figures: exactly the `sitewatch-1` report of each UTC day (the
clear-day shortcut changes nothing), and what each day is drawn as."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.api import daily
from sitewatch.api.availability import EventSpan, report
from sitewatch.streams.enums import CheckType, Severity

DAY = daily.DAY_MS
NOW = 20_000 * DAY + 13 * 3_600_000  # a UTC day, 13:00
DAYS = 6
FIRST = NOW // DAY * DAY - (DAYS - 1) * DAY

moments = st.integers(min_value=FIRST - 2 * DAY, max_value=NOW + DAY)


@st.composite
def spans(draw: st.DrawFn) -> EventSpan:
    check = draw(st.sampled_from(list(CheckType)))
    severity = draw(st.sampled_from([Severity.WARNING, Severity.SEEMS_DOWN, Severity.DOWN]))
    start = draw(moments)
    length = draw(st.none() | st.integers(min_value=0, max_value=3 * DAY))
    return EventSpan(
        draw(st.uuids()).hex,
        check,
        int(severity),
        start,
        None if length is None else start + length,
    )


def per_day(events, maintenance, windows, created, first) -> list[daily.Day]:  # type: ignore[no-untyped-def]
    """The oracle: the report itself, called for every day."""
    out = []
    for start, end in windows:
        rep = report(events, maintenance, start, end, site_created_ms=created, first_event_ms=first)
        out.append(daily._day_of(start, end, rep))
    return out


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(spans(), max_size=6),
    maintenance=st.lists(st.tuples(moments, moments).map(sorted).map(tuple), max_size=2),
    created=st.none() | moments,
    first=st.none() | moments,
)
def test_daily_figures_equal_one_report_per_day(
    events: list[EventSpan],
    maintenance: list[tuple[int, int]],
    created: int | None,
    first: int | None,
) -> None:
    windows = daily.day_windows(NOW, DAYS)
    got = daily.daily(events, maintenance, windows, site_created_ms=created, first_event_ms=first)
    assert got == per_day(events, maintenance, windows, created, first)


def test_day_windows_are_utc_days_ending_with_today_so_far() -> None:
    windows = daily.day_windows(NOW)
    assert len(windows) == daily.DAYS == 90
    assert windows[-1] == (NOW // DAY * DAY, NOW)
    assert all(b - a == DAY for a, b in windows[:-1])
    assert all(windows[i][1] == windows[i + 1][0] for i in range(len(windows) - 1))


def test_clear_days_share_one_report_across_sites() -> None:
    cache: dict[int, object] = {}
    windows = daily.day_windows(NOW, DAYS)
    for _ in range(3):
        daily.daily([], [], windows, site_created_ms=0, first_event_ms=None, clear_days=cache)  # type: ignore[arg-type]
    # one for the full days, one for today so far
    assert sorted(cache) == [NOW % DAY, DAY]


def test_each_day_is_drawn_by_its_downtime_share() -> None:
    windows = daily.day_windows(NOW, 4)
    first_day = windows[0][0]
    events = [
        EventSpan("minor", "http", 4, windows[1][0], windows[1][0] + 60_000),  # < 1 %
        EventSpan("major", "tcp", 4, windows[2][0], windows[2][0] + 3_600_000),
        EventSpan("alarm", "http", 3, windows[3][0], windows[3][0] + 60_000),  # seems down
    ]
    days = daily.daily(
        events,
        [(first_day, first_day + DAY)],
        windows,
        site_created_ms=first_day - DAY,
        first_event_ms=None,
    )
    assert [d.kind for d in days] == [
        daily.DayKind.MAINTENANCE,
        daily.DayKind.PARTIAL,
        daily.DayKind.DOWN,
        daily.DayKind.UP,
    ]
    assert days[3].seems_down_ms == 60_000 and days[3].uptime_ratio == 1.0
    unknown = daily.daily([], [], windows, site_created_ms=NOW, first_event_ms=None)
    assert {d.kind for d in unknown} == {daily.DayKind.NO_DATA}
