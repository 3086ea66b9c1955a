"""The rules that bound the processor's bookkeeping in a site's state (streams/retention.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.streams import records, retention
from sitewatch.streams.state import (
    OUTBOX_HORIZON_MS,
    Config,
    Emitted,
    LifecycleState,
    Parked,
    SiteConfig,
    dump_parked,
    dump_state,
)


def test_site_config_defaults_are_the_sites_record_defaults() -> None:
    rec = records.SiteRecord(site_id=7, url="https://x.test/")
    assert SiteConfig.from_record(rec) == SiteConfig(site_id=7, url="https://x.test/")


def test_park_skips_a_redelivery_and_keeps_within_the_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retention, "MAX_PARKED", 3)
    parked: list[Parked] = []
    assert [retention.park(parked, pos, b"r", 10 * pos) for pos in range(3)] == [0, 0, 0]
    assert retention.park(parked, 2, b"r", 20) is None  # parked already
    assert retention.park(parked, 3, b"r", 30) == 1  # the oldest made room
    assert [p.position for p in parked] == [1, 2, 3]


def test_expired_parked_results_go_and_set_the_deadline() -> None:
    parked: list[Parked] = []
    retention.park(parked, 0, b"old", 0)
    retention.park(parked, 1, b"new", 1000)
    until = retention.parked_expiry(parked)
    assert until == retention.PARKED_TTL_MS
    assert retention.next_deadline(None, Config(), until) == retention.PARKED_TTL_MS
    assert retention.next_deadline(LifecycleState(), Config(), until) == retention.PARKED_TTL_MS
    assert retention.expire_parked(parked, retention.PARKED_TTL_MS) == 1
    assert [p.position for p in parked] == [1]
    assert retention.expire_parked(parked, retention.PARKED_TTL_MS) == 0
    assert retention.parked_expiry([]) is None


def test_a_deleted_site_is_due_for_purge_once_its_outbox_aged_out() -> None:
    state = LifecycleState(deleted_at=5000)
    state.outbox.append(Emitted(position=1, at=9000, transitions=[], verify_requests=[]))
    assert retention.purge_at(state) == 9000 + OUTBOX_HORIZON_MS
    assert retention.next_deadline(state, Config()) == 9000 + OUTBOX_HORIZON_MS
    unknown = LifecycleState(deleted_at=retention.TIME_UNKNOWN)
    assert retention.next_deadline(unknown, Config()) == 0  # its time is set on the next tick


def test_trim_drops_old_outbox_never_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "MAX_STATE_BYTES", 64)
    state = LifecycleState()
    for pos in range(3):
        state.outbox.append(
            Emitted(position=pos, at=pos, transitions=[b"t" * 50], verify_requests=[])
        )
    data = retention.trim(state, dump_state(state))
    assert [e.position for e in state.outbox] == [2]
    assert data == dump_state(state)


@given(values=st.lists(st.integers(min_value=1, max_value=records.MAX_INPUT_BYTES), max_size=400))
@settings(max_examples=60, deadline=None)
def test_parked_row_stays_far_under_the_changelog_message_limit(values: list[int]) -> None:
    """Parked results have their own row now, bounded by their caps alone: with the
    newest always kept, at most MAX_PARKED_BYTES plus one result, never near 1 MiB."""
    parked: list[Parked] = []
    for pos, size in enumerate(values):
        retention.park(parked, pos, b"x" * size, pos)
        assert len(parked) <= retention.MAX_PARKED
    row = dump_parked(parked)
    assert len(row) <= retention.MAX_PARKED_BYTES + records.MAX_INPUT_BYTES + 16 * len(parked)
    assert len(row) < retention.MAX_STATE_BYTES
