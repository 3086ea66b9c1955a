"""The probe's schedule table: intervals, rechecks, jitter, pauses, deletions, moves."""

from __future__ import annotations

import random

from sitewatch.probes.schedule import SiteTable
from sitewatch.streams.records import SiteRecord


def rec(site_id: int = 1, **kw: object) -> SiteRecord:
    fields: dict[str, object] = {"check_interval_s": 60, "recheck_interval_s": 10, **kw}
    return SiteRecord(site_id=site_id, url="https://example.com/", **fields)  # type: ignore[arg-type]


def table() -> SiteTable:
    return SiteTable(jitter=0.1, max_initial_delay_s=5, rng=random.Random(7))


def test_first_check_within_initial_delay_then_interval_with_jitter() -> None:
    t = table()
    t.upsert(rec(), partition=0, now=0)
    due = t.next_due()
    assert due is not None and 0 <= due <= 5
    [(site, gen)] = t.pop_due(5)
    assert t.pop_due(1000) == []  # running: no second entry
    t.done(site.site_id, gen, failed=False, now=10)
    nxt = t.next_due()
    assert nxt is not None and 10 + 54 <= nxt <= 10 + 66


def test_failure_rechecks_sooner() -> None:
    t = table()
    t.upsert(rec(), 0, 0)
    [(site, gen)] = t.pop_due(5)
    t.done(site.site_id, gen, failed=True, now=10)
    nxt = t.next_due()
    assert nxt is not None and 19 <= nxt <= 21


def test_update_while_running_keeps_one_schedule() -> None:
    t = table()
    t.upsert(rec(), 0, 0)
    [(_site, gen)] = t.pop_due(5)
    t.upsert(rec(check_interval_s=120), 0, 6)
    assert t.next_due() is None  # still running, nothing booked twice
    t.done(1, gen, failed=False, now=10)
    nxt = t.next_due()
    assert nxt is not None and nxt >= 10 + 108  # the new interval


def test_pause_delete_and_partition_loss_stop_checks() -> None:
    t = table()
    t.upsert(rec(1), 0, 0)
    t.upsert(rec(2), 1, 0)
    t.upsert(rec(3), 2, 0)
    t.upsert(rec(1, active=False), 0, 1)
    t.delete(2)
    assert t.drop_partitions({2}) == [3]
    assert t.pop_due(1000) == []
    t.upsert(rec(1), 0, 2)  # active again
    assert [s.site_id for s, _ in t.pop_due(1000)] == [1]


def test_stale_result_after_delete_is_ignored() -> None:
    t = table()
    t.upsert(rec(), 0, 0)
    [(_site, gen)] = t.pop_due(5)
    t.delete(1)
    assert not t.is_current(1, gen)
    t.upsert(rec(), 0, 6)  # re-added: a new generation with its own schedule
    t.done(1, gen, failed=True, now=7)  # the old run's end changes nothing
    assert len(t.pop_due(1000)) == 1
