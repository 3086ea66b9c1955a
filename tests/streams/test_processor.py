"""The batch driver shared by the worker and replay, on in-memory stores."""

from __future__ import annotations

from sitewatch.streams import records
from sitewatch.streams.enums import Reason
from sitewatch.streams.message import ConsumedRecord, Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.state import Config
from sitewatch.streams.stores import MemoryStore

from .scenario import result, tick


def make() -> tuple[Processor, list[ConsumedRecord]]:
    return Processor(Config(), MemoryStore(), MemoryStore(), MemoryStore(), "r", "s", "test"), []


def res_msg(offset: int, rec: records.CheckResult, partition: int = 0) -> ConsumedRecord:
    return Record("r", partition, offset, records.site_key(rec.site_id), records.encode(rec))


def site_msg(offset: int, site_id: int, value: bytes | None = b"default") -> ConsumedRecord:
    if value == b"default":
        value = records.encode(records.SiteRecord(site_id=site_id, url="http://x.test/"))
    return Record("s", 0, offset, records.site_key(site_id), value)


def reasons(out_transitions: list[object]) -> list[str]:
    return [
        records.transition_decoder.decode(t.value).reason.value  # type: ignore[attr-defined]
        for t in out_transitions
    ]


def test_result_before_its_site_is_parked_then_applied() -> None:
    proc, _ = make()
    out = proc.process([res_msg(0, result(False, 0)), res_msg(1, result(True, 1))], 0)
    assert out.transitions == [] and proc.stats.parked == 2
    out = proc.process([site_msg(0, 1)], 0)
    assert reasons(out.transitions) == ["opened", "probe_cleared"]
    # the parked inputs were applied at their own offsets: redelivery re-emits
    again = proc.process([res_msg(0, result(False, 0, result_id="x"))], 0)
    assert reasons(again.transitions) == ["opened"]


def test_redelivered_result_while_parked_is_parked_once() -> None:
    proc, _ = make()
    first = result(False, 0)
    proc.process([res_msg(0, first), res_msg(0, first)], 0)
    out = proc.process([site_msg(0, 1)], 0)
    assert reasons(out.transitions) == ["opened"]


def test_deleted_site_changes_nothing() -> None:
    proc, _ = make()
    proc.process([site_msg(0, 1, None)], 0)
    out = proc.process([res_msg(0, result(False, 0))], 0)
    assert out.transitions == [] and proc.stats.parked == 0


def test_tick_fires_timers_of_its_partition_only() -> None:
    proc = Processor(
        Config(auto_timeout_ms=60_000), MemoryStore(), MemoryStore(), MemoryStore(), "r", "s", "t"
    )
    proc.process([site_msg(0, 1), res_msg(0, result(False, 0))], 0)
    other = Record("r", 1, 5, None, records.encode(tick(120)))
    assert proc.process([other], 0).transitions == []
    mine = Record("r", 0, 6, None, records.encode(tick(120)))
    out = proc.process([mine], 0)
    assert reasons(out.transitions) == [Reason.AUTO_TIMEOUT.value]
    assert proc.deadlines == {}


def test_poison_and_misrouted_records_are_dead_lettered() -> None:
    proc, _ = make()
    good = result(False, 0)
    misrouted = Record("r", 0, 1, b"2", records.encode(good))
    out = proc.process(
        [Record("r", 0, 0, b"1", b"{"), misrouted, Record("s", 0, 0, b"1", b"[]")], 0
    )
    assert [dl.offset for _, dl in out.dead_letters] == [0, 1, 0]
    assert "does not match" in out.dead_letters[1][1].error
    assert out.dead_letters[2][1].topic == "s"
