"""The sink's fold without a database: scripted cases and properties (`sink/fold.py`).

State between batches is carried the way shadow mode carries it: `load` over a database
with nothing in it, with the `ShadowOverlay` of the batches before laid over it. So
these tests also hold the overlay to the fold: what a batch leaves behind must be what
the next batch folds on.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.sink import fold
from sitewatch.sink.fold import Changes, Contradiction
from sitewatch.sink.load import load
from sitewatch.sink.projection import Projection
from sitewatch.sink.shadow import ShadowOverlay
from sitewatch.streams import records
from sitewatch.streams.enums import EventState, Reason, SiteState
from sitewatch.streams.message import ConsumedRecord

from . import synthetic
from .helpers import TOPICS, Log
from .test_apply import T0, T1, T2, T3, tr

U, S, D, W, R = (
    EventState.UP,
    EventState.SEEMS_DOWN,
    EventState.DOWN,
    EventState.WARNING,
    EventState.RESOLVED,
)


class EmptyDatabase:
    """A database that holds nothing: every read returns no row."""

    async def read(self, stmt: sa.Select[Any]) -> Sequence[sa.Row[Any]]:
        return []


def settled(coro: Coroutine[Any, Any, Any]) -> Any:
    """The value of a coroutine that never waits (a load from `EmptyDatabase`)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the load waited on something")


class MemorySink:
    """Folds batches one after the other, carrying the state in an overlay."""

    def __init__(self) -> None:
        self.overlay = ShadowOverlay()
        self.projections: dict[int, Projection] = {}
        self.transitions: list[tuple[Any, ...]] = []

    def feed(self, messages: Sequence[ConsumedRecord]) -> Changes:
        batch = fold.decode(messages, TOPICS)
        changes = fold.fold(batch, settled(load(EmptyDatabase(), batch, self.overlay)))
        for sid in changes.deleted:
            self.projections.pop(sid, None)
        self.projections.update((s, t.projection()) for s, t in changes.sites.items())
        self.transitions += changes.transitions
        self.overlay.apply(changes)
        return changes

    def state(self) -> tuple[Any, ...]:
        """The tables as the batches would have left them: events, projections, and the
        transition rows as a set, without their Kafka coordinates."""
        return (
            {eid: ev.as_tuple() for eid, ev in self.overlay.events.items()},
            dict(self.projections),
            {row[:-3] for row in self.transitions},
        )


def fold_all(messages: Sequence[ConsumedRecord], batch: int) -> MemorySink:
    sink = MemorySink()
    for start in range(0, len(messages), batch):
        sink.feed(messages[start : start + batch])
    return sink


def lifecycle(seed: int, n_sites: int, count: int) -> list[records.Transition]:
    """A synthetic history with unique ids: the generator gives an event reopened at the
    same millisecond the id of the one before (a duplicate for the sink)."""
    out: list[records.Transition] = []
    alias: dict[str, str] = {}
    opened: Counter[str] = Counter()
    for x in synthetic.transitions(random.Random(seed), n_sites, count):
        if x.reason is Reason.OPENED:
            opened[x.event_id] += 1
            alias[x.event_id] = f"{x.event_id}#{opened[x.event_id]}"
        eid = alias[x.event_id]
        out.append(msgspec.structs.replace(x, event_id=eid, transition_id=f"{eid}|{x.seq}"))
    return out


# --- scripted cases


def test_an_event_opened_changed_and_closed_in_one_batch_is_one_inserted_row() -> None:
    log = Log()
    changes = MemorySink().feed(
        [
            log.transition(tr("h1", 1, Reason.OPENED, U, S, 0, 3, T0, T0)),
            log.transition(tr("h1", 2, Reason.VERIFIER_CONFIRMED, S, D, 3, 4, T1, T0)),
            log.transition(tr("h1", 3, Reason.VERIFIER_CLEARED, D, R, 4, None, T2, T0)),
        ]
    )
    assert changes.updated == [] and [e.id for e in changes.inserted] == ["h1"]
    (h1,) = changes.inserted
    assert (h1.state, h1.severity, h1.resolution_reason) == ("resolved", 4, "verifier_cleared")
    assert [row[0] for row in changes.transitions] == ["h1:1", "h1:2", "h1:3"]
    assert changes.contradicted == [] and not changes.counts
    tracker = changes.sites[1]
    assert tracker.current_state is SiteState.UP and tracker.open_events == {}


def test_a_later_batch_updates_what_an_earlier_one_inserted() -> None:
    log, sink = Log(), MemorySink()
    sink.feed([log.transition(tr("h1", 1, Reason.OPENED, U, S, 0, 3, T0, T0))])
    changes = sink.feed(
        [
            log.transition(tr("h1", 2, Reason.PROBE_CLEARED, S, R, 3, None, T1, T0)),
            log.transition(tr("h2", 1, Reason.OPENED, U, S, 0, 3, T2, T2)),  # same tuple
        ]
    )
    assert [e.id for e in changes.updated] == ["h1"] and [e.id for e in changes.inserted] == ["h2"]
    assert sink.projections[1].active_event_id == "h2"


def test_each_contradiction_is_reported_and_not_applied() -> None:
    log, sink = Log(), MemorySink()
    sink.feed(
        [
            log.transition(tr("h1", 1, Reason.OPENED, U, S, 0, 3, T0, T0)),
            log.transition(tr("h1", 2, Reason.PROBE_CLEARED, S, R, 3, None, T1, T0)),
            log.transition(tr("h2", 1, Reason.OPENED, U, S, 0, 3, T1, T1)),
        ]
    )
    before = sink.state()
    bad = {
        Contradiction.REASON_STATE_MISMATCH: tr("h2", 2, Reason.PROBE_CLEARED, S, D, 3, 4, T2, T1),
        Contradiction.LIVE_WITHOUT_SEVERITY: tr(
            "h2", 3, Reason.VERIFIER_CONFIRMED, S, U, 3, 0, T2, T1
        ),
        Contradiction.OPENS_EXISTING: tr("h1", 9, Reason.OPENED, U, S, 0, 3, T2, T2),
        Contradiction.OPENS_WHILE_OPEN: tr("h3", 1, Reason.OPENED, U, S, 0, 3, T2, T2),
        Contradiction.UNKNOWN_EVENT: tr("ghost", 2, Reason.PROBE_CLEARED, S, R, 3, None, T2, T0),
        Contradiction.OTHER_SITE: tr(
            "h2", 4, Reason.VERIFIER_CONFIRMED, S, D, 3, 4, T2, T1, site_id=2
        ),
        Contradiction.ALREADY_CLOSED: tr("h1", 3, Reason.VERIFIER_CONFIRMED, S, D, 3, 4, T3, T0),
    }
    assert set(bad) == set(Contradiction)  # every kind is exercised
    changes = sink.feed([log.transition(x) for x in bad.values()])
    assert [c.kind for c in changes.contradicted] == list(bad)
    assert changes.transitions == [] and changes.updated == changes.inserted == []
    assert sink.state() == before
    words = {c.kind: c.detail for c in changes.contradicted}
    assert words[Contradiction.OPENS_EXISTING] == "opening event h1 which already exists (closed)"
    assert words[Contradiction.OPENS_WHILE_OPEN] == (
        "opening event h3 while event h2 is open for its tuple"
    )
    assert words[Contradiction.UNKNOWN_EVENT] == "probe_cleared transition for unknown event ghost"
    assert words[Contradiction.OTHER_SITE] == "event h2 belongs to site 1, not 2"
    assert words[Contradiction.ALREADY_CLOSED] == (
        "verifier_confirmed transition for event h1, already closed"
    )


def test_poison_is_set_aside_and_the_batch_goes_on() -> None:
    log = Log()
    good = log.transition(tr("h1", 1, Reason.OPENED, U, S, 0, 3, T0, T0))
    messy = [
        log.msg(TOPICS.site_events, 0, b"1", b"{not json"),
        good,
        log.msg(TOPICS.sites, 0, b"abc", b"{}"),
        log.msg("elsewhere", 0, None, b"{}"),
    ]
    batch = fold.decode(messy, TOPICS)
    assert [m.topic for m, _ in batch.poison] == [TOPICS.site_events, TOPICS.sites, "elsewhere"]
    assert [why.split(":")[0] for _, why in batch.poison] == [
        "malformed transition",
        "malformed site record",
        "unexpected topic elsewhere",
    ]
    assert [m for m, _ in batch.transitions] == [good]


def test_a_tombstone_cascades_to_the_sites_events_and_keeps_their_later_transitions() -> None:
    log, sink = Log(), MemorySink()
    sink.feed(
        [
            log.site(records.SiteRecord(site_id=1, url="https://gone.example")),
            log.transition(tr("gone", 1, Reason.OPENED, U, S, 0, 3, T0, T0)),
        ]
    )
    changes = sink.feed(
        [
            log.tombstone(1),
            log.transition(tr("gone", 2, Reason.AUTO_TIMEOUT, S, R, 3, None, T2, T0)),
        ]
    )
    assert changes.deleted == [1] and changes.settings == []
    assert changes.counts["of_deleted_sites"] == 1 and changes.contradicted == []
    assert [row[0] for row in changes.transitions] == ["gone:2"]
    assert changes.sites == {} and sink.overlay.events == {}


# --- properties

batches = st.integers(1, 80)
seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, n_sites=st.integers(1, 6), count=st.integers(1, 200), batch=batches)
def test_a_history_folds_to_the_same_rows_in_any_batch_sizes(
    seed: int, n_sites: int, count: int, batch: int
) -> None:
    msgs = synthetic.as_messages(TOPICS.site_events, lifecycle(seed, n_sites, count))
    whole = fold_all(msgs, len(msgs))
    assert fold_all(msgs, batch).state() == whole.state()
    assert len(whole.transitions) == count


@settings(max_examples=40, deadline=None)
@given(seed=seeds, count=st.integers(1, 150), batch=batches)
def test_a_transition_applied_twice_is_a_no_op(seed: int, count: int, batch: int) -> None:
    msgs = synthetic.as_messages(TOPICS.site_events, lifecycle(seed, 4, count))
    sink = fold_all(msgs, batch)
    before = sink.state()
    again = sink.feed(msgs)  # a redelivery
    assert again.counts["duplicates"] == count and again.transitions == []
    assert again.updated == again.inserted == [] and again.sites == {}
    assert sink.state() == before
    # a duplicate within one batch, too
    doubled = fold_all([*msgs, *msgs], 2 * count)
    assert doubled.state() == before


@settings(max_examples=40, deadline=None)
@given(seed=seeds, count=st.integers(2, 150), data=st.data())
def test_the_order_of_unrelated_sites_does_not_matter(
    seed: int, count: int, data: st.DataObject
) -> None:
    items = lifecycle(seed, 5, count)
    # any interleaving that keeps each site's own order
    shuffled = data.draw(st.permutations(range(len(items))))
    by_site: dict[int, list[records.Transition]] = {}
    for x in items:
        by_site.setdefault(x.site_id, []).append(x)
    cursor = {site: 0 for site in by_site}
    interleaved: list[records.Transition] = []
    for i in shuffled:
        site = items[i].site_id
        interleaved.append(by_site[site][cursor[site]])
        cursor[site] += 1
    one = fold_all(synthetic.as_messages(TOPICS.site_events, items), count)
    other = fold_all(synthetic.as_messages(TOPICS.site_events, interleaved), count)
    assert one.state() == other.state()


@settings(max_examples=40, deadline=None)
@given(seed=seeds, count=st.integers(1, 120), at=st.integers(0, 120), close=st.booleans())
def test_a_contradiction_is_reported_and_not_applied(
    seed: int, count: int, at: int, close: bool
) -> None:
    items = lifecycle(seed, 3, count)
    reason = Reason.PROBE_CLEARED if close else Reason.VERIFIER_CONFIRMED
    after, sev = (R, None) if close else (D, 4)
    ghost = tr("ghost", 2, reason, S, after, 3, sev, T1, T0)
    at = min(at, len(items))
    clean = fold_all(synthetic.as_messages(TOPICS.site_events, items), count + 1)
    sink = MemorySink()
    changes = sink.feed(
        synthetic.as_messages(TOPICS.site_events, [*items[:at], ghost, *items[at:]])
    )
    assert [c.kind for c in changes.contradicted] == [Contradiction.UNKNOWN_EVENT]
    assert sink.state() == clean.state()
