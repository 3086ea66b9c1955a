"""Results parked for missing settings: the driver's own store, never the core's state.

A result can overtake the first `sites` record of its site (nothing orders the two
topics); the processor parks it in its `ParkedStore` and applies it when the settings
arrive. What the worker's tables hold is what these dict stores hold.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.streams import records, retention
from sitewatch.streams.message import ConsumedRecord, Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.state import (
    Config,
    LifecycleState,
    Parked,
    dump_parked,
    load_parked,
    load_state,
    load_stored_state,
)
from sitewatch.streams.stores import DELETED, MemoryStore

from .scenario import T0, result, tick

R, S = "r", "s"


class CountingStore(MemoryStore):
    """A dict store that counts its reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: bytes, msg: ConsumedRecord) -> bytes | None:
        self.reads += 1
        return super().get(key, msg)


class Stores:
    def __init__(self) -> None:
        self.states = MemoryStore()
        self.settings = MemoryStore()
        self.parked = CountingStore()

    def processor(self, config: Config | None = None) -> Processor:
        return Processor(config or Config(), self.states, self.settings, self.parked, R, S, "test")


def res(offset: int, rec: records.CheckResult) -> ConsumedRecord:
    return Record(R, 0, offset, records.site_key(rec.site_id), records.encode(rec))


def site(offset: int, site_id: int = 1) -> ConsumedRecord:
    rec = records.SiteRecord(site_id=site_id, url="http://x.test/")
    return Record(S, 0, offset, records.site_key(site_id), records.encode(rec))


def tomb(offset: int, site_id: int = 1) -> ConsumedRecord:
    return Record(S, 0, offset, records.site_key(site_id), None)


def tick_msg(offset: int, t: float) -> ConsumedRecord:
    return Record(R, 0, offset, None, records.encode(tick(t)))


def reasons(out: Any) -> list[str]:
    return [records.decode_transition(t.value).reason.value for t in out.transitions]


def test_lifecycle_state_has_no_parked_results() -> None:
    assert "parked" not in LifecycleState.__struct_fields__


def test_parked_result_goes_to_the_parked_store_and_writes_no_state() -> None:
    s = Stores()
    proc = s.processor()
    proc.process([res(0, result(False, 0)), res(1, result(True, 1))], 0)
    assert s.states.data == {} and s.settings.data == {}
    assert [p.position for p in load_parked(s.parked.data[b"1"])] == [0, 1]
    assert proc.stats.parked == 2
    assert reasons(proc.process([site(0)], 0)) == ["opened", "probe_cleared"]
    assert s.parked.data == {} and b"1" in s.states.data


def test_site_with_settings_never_reads_the_parked_store() -> None:
    """Settings present => nothing parked: the hot path asks no store for parked rows."""
    s = Stores()
    proc = s.processor(Config(auto_timeout_ms=60_000))
    proc.process([site(0), site(1, site_id=2)], 0)
    for n in range(200):
        rec = result(n % 7 == 0, n, site_id=1 + n % 2)
        proc.process([res(n, rec), tick_msg(1000 + n, n)], 0)
    proc.process([tick_msg(5000, 400)], 0)  # auto_timeout and housekeeping on ticks
    assert s.parked.reads == 0 and s.parked.data == {}
    # a site that parks keeps its parked results decoded between batches, as states are
    proc.process([res(300, result(False, 300, site_id=3))], 0)
    proc.process([res(301, result(False, 301, site_id=3))], 0)
    assert b"3" in s.parked.data
    proc.process([site(2, site_id=3)], 0)
    proc.process([res(302 + n, result(True, 302 + n, site_id=3)) for n in range(50)], 0)
    assert s.parked.reads == 0 and s.parked.data == {}


def test_parked_results_read_back_from_the_store_once_no_longer_kept_decoded() -> None:
    s = Stores()
    proc = s.processor()
    proc.process([res(0, result(False, 0)), res(1, result(True, 1))], 0)
    proc.forget_partitions({0})  # as after a rebalance: the store is the truth again
    proc.rebuild_deadlines([], [(b"1", 0, s.parked.data[b"1"])])
    assert reasons(proc.process([site(0)], 0)) == ["opened", "probe_cleared"]
    assert s.parked.reads == 1 and s.parked.data == {}


def test_parked_results_apply_in_arrival_order_when_settings_arrive_later_in_the_batch() -> None:
    s = Stores()
    proc = s.processor()
    out = proc.process(
        [res(0, result(False, 0)), res(1, result(True, 1)), site(0), res(2, result(False, 2))], 0
    )
    assert reasons(out) == ["opened", "probe_cleared", "opened"]
    assert s.parked.data == {}


def test_tombstone_drops_parked_results_and_counts_them() -> None:
    s = Stores()
    proc = s.processor()
    proc.process([res(0, result(False, 0)), res(1, result(False, 1))], 0)
    out = proc.process([tomb(0)], 0)
    assert out.transitions == [] and s.parked.data == {}
    assert proc.stats.dropped_parked == 2 and s.settings.data[b"1"] == DELETED


def test_result_parked_before_a_crash_that_landed_only_the_settings_row_is_applied_first() -> None:
    """The settings row of a batch reached its changelog, the parked row's delete did not:
    a result arriving before the redelivered `sites` record must not overtake what waits."""
    first = result(False, 0)
    second = result(True, 1)
    s = Stores()
    s.settings.data[b"1"] = site(0).value or b""
    s.parked.data[b"1"] = dump_parked([Parked(position=0, value=records.encode(first), at=T0)])
    proc = s.processor()
    proc.rebuild_deadlines([], [(b"1", 0, s.parked.data[b"1"])])  # as the worker on assignment
    assert reasons(proc.process([res(1, second)], 0)) == ["opened", "probe_cleared"]
    assert s.parked.data == {}
    # the redelivered `sites` record finds nothing parked; redelivered results re-emit
    assert reasons(proc.process([site(0), res(0, first)], 0)) == ["opened"]


# -- states stored by the version that kept parked results inside them ------------------

A = records.encode(result(False, 0, result_id="a"))
B = records.encode(result(True, 1, result_id="b"))


def _bin(value: bytes) -> bytes:
    return b"\xc5" + len(value).to_bytes(2, "big") + value


def _uint64(value: int) -> bytes:
    return b"\xcf" + value.to_bytes(8, "big")


#: what `dump_state` wrote before the parked store (byte for byte: checked against that
#: version), for a site with two parked results:
#: msgpack [open {}, marks {}, position -1, outbox [], parked [[0, A, T0], [1, B, T0 + 1 s]],
#: deleted_at None]
OLD_STATE = (
    b"\x96\x80\x80\xff\x90\x92"
    + (b"\x93\x00" + _bin(A) + _uint64(T0))
    + (b"\x93\x01" + _bin(B) + _uint64(T0 + 1000))
    + b"\xc0"
)


def test_state_stored_with_parked_results_inside_still_loads() -> None:
    state, parked = load_stored_state(OLD_STATE)
    assert state == LifecycleState()
    assert [(p.position, p.value, p.at) for p in parked] == [(0, A, T0), (1, B, T0 + 1000)]


def test_parked_results_of_an_old_state_are_applied_when_settings_arrive() -> None:
    s = Stores()
    s.states.data[b"1"] = OLD_STATE
    proc = s.processor()
    proc.rebuild_deadlines([(b"1", 0, OLD_STATE)], [])  # as the worker on assignment
    assert proc.deadlines == {b"1": (0, T0 + retention.PARKED_TTL_MS)}
    assert reasons(proc.process([site(0)], 0)) == ["opened", "probe_cleared"]
    assert s.parked.data == {}
    state = load_state(s.states.data[b"1"])  # written again in the current layout
    assert state.position == 1


def test_parked_results_of_an_old_state_move_to_the_parked_store_on_first_touch() -> None:
    s = Stores()
    s.states.data[b"1"] = OLD_STATE
    proc = s.processor()
    proc.process([res(2, result(False, 2))], 0)  # no settings yet: parked behind them
    assert [p.position for p in load_parked(s.parked.data[b"1"])] == [0, 1, 2]
    assert load_state(s.states.data[b"1"]) == LifecycleState()
    assert reasons(proc.process([site(0)], 0)) == ["opened", "probe_cleared", "opened"]


def test_parked_results_of_an_old_state_expire_on_stream_time() -> None:
    s = Stores()
    s.states.data[b"1"] = OLD_STATE
    proc = s.processor()
    proc.rebuild_deadlines([(b"1", 0, OLD_STATE)], [])
    proc.process([tick_msg(0, retention.PARKED_TTL_MS / 1000 + 2)], 0)
    assert s.states.data == {} and s.parked.data == {} and proc.deadlines == {}
    assert proc.stats.dropped_parked == 2


# -- the invariant, over any interleaving ------------------------------------------------

SITES = (1, 2)
steps = st.lists(
    st.tuples(st.sampled_from(["result", "site", "tombstone", "tick"]), st.sampled_from(SITES)),
    max_size=40,
)


@given(steps=steps, batch=st.integers(min_value=1, max_value=5))
@settings(max_examples=150, deadline=None)
def test_settings_present_means_nothing_parked_and_the_index_is_exact(
    steps: list[tuple[str, int]], batch: int
) -> None:
    s = Stores()
    proc = s.processor(Config(auto_timeout_ms=600_000))
    msgs: list[ConsumedRecord] = []
    offsets = {R: 0, S: 0}
    for n, (kind, site_id) in enumerate(steps):
        topic = S if kind in ("site", "tombstone") else R
        off = offsets[topic]
        offsets[topic] += 1
        if kind == "result":
            msgs.append(res(off, result(n % 3 == 0, n * 600, site_id=site_id)))
        elif kind == "site":
            msgs.append(site(off, site_id))
        elif kind == "tombstone":
            msgs.append(tomb(off, site_id))
        else:
            msgs.append(tick_msg(off, n * 600))
    for i in range(0, len(msgs), batch):
        proc.process(msgs[i : i + batch], 0)
        for key in (records.site_key(x) for x in SITES):
            if s.settings.data.get(key) is not None:
                assert key not in s.parked.data  # settings present => nothing parked
        assert set(proc.parking.index) == set(s.parked.data)  # the index is exact
        for key in s.parked.data:
            assert key in proc.deadlines  # every parked result expires on a timer
