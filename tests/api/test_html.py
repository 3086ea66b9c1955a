"""The pages' formatting: every transition reason has its words, durations and ratios read
the same way on every page."""

from __future__ import annotations

import pytest

from sitewatch.api import html
from sitewatch.streams.enums import Reason


def test_every_transition_reason_has_words_on_the_timeline() -> None:
    assert set(html.REASON_WORDS) == set(Reason)
    assert html.reason_words("a_reason_from_a_newer_release") == ""


NB = "\u00a0"  # a number keeps its unit on its line


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "—"),
        (0, f"0{NB}s"),
        (1_250, f"1.25{NB}s"),
        (4 * 60_000 + 12_000, f"4{NB}min 12{NB}s"),
        (3_600_000 + 5 * 60_000, f"1{NB}h 05{NB}min"),
        (3 * 86_400_000 + 4 * 3_600_000, f"3{NB}d 4{NB}h"),
    ],
)
def test_durations_read_as_a_person_says_them(ms: int | None, text: str) -> None:
    assert html.duration(ms) == text


def test_uptime_is_rounded_down_so_any_downtime_shows() -> None:
    assert html.percent(1.0) == "100 %"
    assert html.percent(0.999_999) == "99.999 %"
    assert html.percent(None) == "no data"
    assert html.state_word("seems_down") == "seems down"
