"""The pages' formatting: every transition reason has its words, durations and ratios read
the same way on every page."""

from __future__ import annotations

import pytest

from sitewatch.api import html
from sitewatch.streams.enums import Reason


def test_every_transition_reason_has_words_on_the_timeline() -> None:
    assert set(html.REASON_WORDS) == set(Reason)
    assert html.reason_words("a_reason_from_a_newer_release") == ""


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "—"),
        (0, "0 s"),
        (1_250, "1.25 s"),
        (4 * 60_000 + 12_000, "4 min 12 s"),
        (3_600_000 + 5 * 60_000, "1 h 05 min"),
        (3 * 86_400_000 + 4 * 3_600_000, "3 d 4 h"),
    ],
)
def test_durations_read_as_a_person_says_them(ms: int | None, text: str) -> None:
    assert html.duration(ms) == text


def test_uptime_is_rounded_down_so_any_downtime_shows() -> None:
    assert html.percent(1.0) == "100 %"
    assert html.percent(0.999_999) == "99.999 %"
    assert html.percent(None) == "no data"
    assert html.state_word("seems_down") == "seems down"
