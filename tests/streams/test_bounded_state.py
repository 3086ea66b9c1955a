"""Issue 11, item 6: the worker's state stays bounded whatever the inputs.

Deleted sites leave every table and index; parked results are capped in bytes and
expire; the settings cache evicts; a site's state cannot outgrow the changelog's 1 MiB
message limit; a tick looks only at the timers that are due; and no custom header
value reaches the worker's tables or its verify requests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sitewatch.streams import outputs, processor, records, retention, stores, timefmt
from sitewatch.streams.message import ConsumedRecord, Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.state import (
    MAX_MARK_IDS,
    MAX_MARKS,
    MAX_OPEN_EVENTS,
    OUTBOX_HORIZON_MS,
    Config,
    load_parked,
    load_state,
)
from sitewatch.streams.stores import MemoryStore
from sitewatch.streams.timers import Timers

from .scenario import T0, result, tick

R, S = "r", "s"
HOUR = 3600


class Worker:
    """A processor on dict stores, with a message log numbering offsets like a broker."""

    def __init__(self, config: Config | None = None) -> None:
        self.states = MemoryStore()
        self.settings = MemoryStore()
        self.parked = MemoryStore()
        self.proc = Processor(
            config or Config(), self.states, self.settings, self.parked, R, S, "test"
        )
        self.offsets = {R: 0, S: 0}

    def _msg(self, topic: str, key: bytes | None, value: bytes | None) -> ConsumedRecord:
        off = self.offsets[topic]
        self.offsets[topic] += 1
        return Record(topic, 0, off, key, value)

    def site(self, site_id: int = 1, **fields: Any) -> outputs.Output:
        rec = records.SiteRecord(site_id=site_id, url="http://x.test/", **fields)
        return self.feed(self._msg(S, records.site_key(site_id), records.encode(rec)))

    def delete(self, site_id: int = 1) -> outputs.Output:
        return self.feed(self._msg(S, records.site_key(site_id), None))

    def result(self, rec: records.CheckResult) -> outputs.Output:
        return self.feed(self._msg(R, records.site_key(rec.site_id), records.encode(rec)))

    def tick(self, t: float) -> outputs.Output:
        return self.feed(self._msg(R, None, records.encode(tick(t))))

    def feed(self, *msgs: ConsumedRecord) -> outputs.Output:
        return self.proc.process(list(msgs), 0)


def reasons(out: outputs.Output) -> list[str]:
    return [records.decode_transition(t.value).reason.value for t in out.transitions]


def test_deleted_site_is_purged_from_every_table_and_index() -> None:
    w = Worker(Config(auto_timeout_ms=HOUR * 1000))
    w.site()
    w.result(result(False, 0))  # an open event, a timer
    assert b"1" in w.proc.deadlines
    w.delete()
    assert w.settings.data[b"1"] == stores.DELETED  # late results change nothing
    assert w.result(result(False, 10)).transitions == [] and w.proc.stats.parked == 0
    # rule 7: the deleted site's event times out on stream time...
    assert reasons(w.tick(HOUR + 1)) == ["auto_timeout"]
    assert b"1" in w.states.data  # ...and the state waits out the outbox horizon
    w.tick(HOUR + 1 + OUTBOX_HORIZON_MS / 1000 + 1)
    assert w.states.data == {} and w.settings.data == {}
    assert w.proc.deadlines == {} and len(w.proc.site_records) == 0 and len(w.proc.site_states) == 0
    assert w.proc.stats.purged == 1


def test_site_deleted_while_healthy_is_purged_after_the_horizon() -> None:
    w = Worker()
    w.site()
    w.result(result(True, 0))
    w.delete()
    w.tick(60)
    assert b"1" in w.states.data
    w.tick(OUTBOX_HORIZON_MS / 1000 + 61)
    assert w.states.data == {} and w.settings.data == {} and w.proc.deadlines == {}


def test_flood_of_tombstones_for_unknown_sites_leaves_nothing_behind() -> None:
    w = Worker()
    w.result(result(True, 0, site_id=9999))  # gives the partition a stream time
    for site_id in range(1, 2001):
        w.delete(site_id)
    w.tick(OUTBOX_HORIZON_MS / 1000 + 1)
    assert set(w.settings.data) == set() and set(w.states.data) == set()
    assert set(w.parked.data) == {b"9999"}  # only the parked result of 9999 is left


def test_deleted_site_that_comes_back_keeps_its_open_event() -> None:
    w = Worker()
    w.site()
    w.result(result(False, 0))
    w.delete()
    w.site()
    assert reasons(w.result(result(True, 30))) == ["probe_cleared"]


def test_parked_bytes_are_capped_per_site() -> None:
    w = Worker()
    big = "d" * 2000
    for n in range(200):
        rec = result(False, n)
        w.result(records.CheckResult(**{**_fields(rec), "detail": big}))
    parked = load_parked(w.parked.data[b"1"])
    assert sum(len(p.value) for p in parked) <= retention.MAX_PARKED_BYTES
    assert w.proc.stats.dropped_parked > 0
    assert len(w.parked.data[b"1"]) < retention.MAX_PARKED_BYTES + 10_000
    assert w.states.data == {}  # parking writes no lifecycle state


def test_parked_results_of_a_site_that_never_comes_expire() -> None:
    w = Worker()
    w.result(result(False, 0))
    assert b"1" in w.proc.deadlines
    w.tick(retention.PARKED_TTL_MS / 1000 - 1)
    assert b"1" in w.parked.data
    w.tick(retention.PARKED_TTL_MS / 1000 + 1)
    assert w.parked.data == {} and w.states.data == {} and w.proc.deadlines == {}
    assert w.proc.stats.dropped_parked == 1 and w.proc.stats.purged == 1


def test_settings_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processor, "MAX_CACHED_SETTINGS", 50)
    w = Worker()
    for site_id in range(1, 301):
        w.site(site_id)
        w.result(result(True, site_id, site_id=site_id))
    assert len(w.proc.site_records) <= 50


def _fields(rec: records.CheckResult) -> dict[str, Any]:
    return {f: getattr(rec, f) for f in rec.__struct_fields__}


def test_endless_endpoint_ids_keep_a_sites_state_bounded() -> None:
    w = Worker()
    w.site()
    for n in range(3000):  # healthy results of ever new endpoints
        w.result(result(True, n, endpoint_id=n + 1))
    for n in range(500):  # failing ones, each a new tuple
        w.result(result(False, 3000 + n, endpoint_id=10_000 + n))
    state = load_state(w.states.data[b"1"])
    assert len(state.marks) <= MAX_MARKS and len(state.open) == MAX_OPEN_EVENTS
    assert len(w.states.data[b"1"]) < retention.MAX_STATE_BYTES


def test_results_sharing_one_timestamp_keep_few_ids() -> None:
    w = Worker()
    w.site()
    for n in range(500):
        w.result(result(True, 0, result_id=f"id-{n}"))
    (mark,) = load_state(w.states.data[b"1"]).marks.values()
    assert len(mark.ids) == MAX_MARK_IDS


def test_tick_touches_only_the_timers_that_are_due(monkeypatch: pytest.MonkeyPatch) -> None:
    w = Worker(Config(auto_timeout_ms=HOUR * 1000))
    for site_id in range(1, 2001):
        w.site(site_id)
        # one site's event falls due an hour after t=0, the others an hour after t=1000
        w.result(result(False, 0 if site_id == 7 else 1000, site_id=site_id))
    assert len(w.proc.deadlines) == 2000
    applied: list[bytes] = []
    real = w.proc._apply

    def counting(key: bytes, *args: Any) -> None:
        applied.append(key)
        real(key, *args)

    monkeypatch.setattr(w.proc, "_apply", counting)
    for t in range(HOUR - 10, HOUR + 10):  # 20 ticks
        w.tick(t)
    assert applied == [b"7"]  # not 2000 sites x 20 ticks
    assert len(w.proc.deadlines) == 1999


def test_timer_heap_stays_bounded_under_churn() -> None:
    timers = Timers()
    for n in range(100_000):
        timers.schedule(b"k%d" % (n % 10), 0, n)
    assert len(timers.due) == 10 and timers._entries < 2 * 10 + 1100
    assert timers.pop_due(0, 99_995) == [b"k0", b"k1", b"k2", b"k3", b"k4", b"k5"]


def test_worker_tables_and_verify_requests_hold_no_header_value() -> None:
    secret = "Bearer s3cr3t-t0ken"
    w = Worker(Config(verifiers=("eu",)))
    w.site(num_of_checks=1, custom_headers={"Authorization": secret})
    out = w.result(result(False, 0))
    (req,) = [records.decode_verify_request(v.value) for v in out.verify_requests]
    assert req.custom_headers is None and req.headers_ref == records.headers_ref(1)
    stored = w.settings.data[b"1"] + w.states.data[b"1"]
    assert b"s3cr3t" not in stored and b"Authorization" in w.settings.data[b"1"]
    # a site without headers asks without a reference
    w.site(2, num_of_checks=1)
    (req2,) = w.result(result(False, 0, site_id=2)).verify_requests
    assert records.decode_verify_request(req2.value).headers_ref is None


def test_replayed_inputs_give_the_same_transitions_with_purges_on_the_way() -> None:
    """Purging is driven by stream time only: two runs over the same log agree."""
    log = Worker()  # only numbers the messages
    msgs: list[ConsumedRecord] = []

    def add(topic: str, key: bytes | None, value: bytes | None) -> None:
        msgs.append(log._msg(topic, key, value))

    for site_id in (1, 2, 3):
        rec = records.SiteRecord(site_id=site_id, url="http://x.test/")
        add(S, records.site_key(site_id), records.encode(rec))
        add(R, records.site_key(site_id), records.encode(result(False, 0, site_id=site_id)))
    add(S, b"2", None)
    for t in range(0, 3 * HOUR, 600):
        add(R, None, records.encode(tick(t)))
        add(R, b"1", records.encode(result(t % 1200 == 0, t + 1)))

    def run() -> list[bytes]:
        w = Worker(Config(auto_timeout_ms=HOUR * 1000))
        return [t.value for m in msgs for t in w.feed(m).transitions]

    first = run()
    assert first == run()
    assert json.loads(first[0])["at"] == timefmt.from_ms(T0)
    assert "auto_timeout" in {json.loads(t)["reason"] for t in first}  # site 2, deleted
