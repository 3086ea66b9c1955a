"""Issue 11: random and mutated records thrown at every reader, in process (fast, many).

Each reader gets a batch of hostile records followed by a good one: it must not raise,
must dead-letter exactly the records the wire contract refuses (`hostile.poison`), and
must still process the good record after them. `tests/e2e/test_fuzz_readers.py` does
the same with the real processes on the real broker.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitewatch.migrations.command import upgrade
from sitewatch.notify.notifier import Notifier
from sitewatch.probes.probe import Probe
from sitewatch.probes.schedule import SiteTable
from sitewatch.probes.verifier import Verifier
from sitewatch.settings import Settings
from sitewatch.sink.batch import BatchApplier
from sitewatch.sink.db import make_engine
from sitewatch.sink.gate import WriteGate
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.message import Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.replay import Replay, Window, record_stamp
from sitewatch.streams.state import Config
from sitewatch.streams.stores import MemoryStore
from sitewatch.streams.topics import Topic, TopicNames

from .hostile import VALID, hostile, poison

NAMES = TopicNames("fuzz.")
GOOD_SITE = 77
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: readers that open a database per example: fewer examples
DB_FUZZ = settings(FUZZ, max_examples=50)
batches = {
    topic: st.lists(hostile(topic), min_size=1, max_size=12)
    for topic in ("sites", "check-results", "verify-requests", "site-events")
}


class Msg(NamedTuple):
    """A consumed record, as aiokafka hands them over."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Sent:
    """Stands in for a producer: keeps what would have been published."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> None:
        self.records.append((topic, key, value))

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        self.records.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def dead_offsets(self, topic: str) -> set[int]:
        return {
            records.dead_letter_decoder.decode(v).offset
            for t, _, v in self.records
            if t == f"{topic}.dead-letter" and v is not None
        }


def poisoned(topic: str, rows: list[tuple[bytes | None, bytes | None]], first: int = 0) -> set[int]:
    return {first + n for n, (k, v) in enumerate(rows) if poison(topic, k, v)}


def good_failure(site_id: int = GOOD_SITE) -> bytes:
    rec = records.CheckResult(
        result_id="good",
        site_id=site_id,
        check_type=CheckType.HTTP,
        ok=False,
        observed_at=VALID_T,  # type: ignore[arg-type]
    )
    return records.encode(rec)


VALID_T = "2026-11-26T10:00:00.000Z"


def good_site(site_id: int = GOOD_SITE) -> bytes:
    return records.encode(records.SiteRecord(site_id=site_id, url="http://127.0.0.1:9/"))


def fresh_processor() -> Processor:
    stores = MemoryStore(), MemoryStore(), MemoryStore()
    return Processor(Config(), *stores, NAMES.check_results, NAMES.sites, "w")


@given(rows=batches["check-results"])
@FUZZ
def test_worker_survives_any_check_results(rows: list[tuple[bytes | None, bytes | None]]) -> None:
    proc = fresh_processor()
    msgs = [Record(NAMES.sites, 0, 0, records.site_key(GOOD_SITE), good_site())]
    msgs += [Record(NAMES.check_results, 0, n, k, v) for n, (k, v) in enumerate(rows)]
    msgs.append(
        Record(NAMES.check_results, 0, len(rows), records.site_key(GOOD_SITE), good_failure())
    )
    out = proc.process(msgs, 0)
    assert {d.offset for _, d in out.dead_letters} == poisoned("check-results", rows)
    opened = [records.decode_transition(t.value) for t in out.transitions]
    assert any(t.site_id == GOOD_SITE and t.reason.value == "opened" for t in opened)


@given(rows=batches["sites"])
@FUZZ
def test_worker_survives_any_site_records(rows: list[tuple[bytes | None, bytes | None]]) -> None:
    proc = fresh_processor()
    msgs = [Record(NAMES.sites, 0, n, k, v) for n, (k, v) in enumerate(rows)]
    msgs.append(Record(NAMES.sites, 0, len(rows), records.site_key(GOOD_SITE), good_site()))
    msgs.append(Record(NAMES.check_results, 0, 0, records.site_key(GOOD_SITE), good_failure()))
    out = proc.process(msgs, 0)
    assert {d.offset for _, d in out.dead_letters} == poisoned("sites", rows)
    assert len(out.transitions) == 1


@given(rows=batches["sites"])
@FUZZ
def test_probe_survives_any_site_records(rows: list[tuple[bytes | None, bytes | None]]) -> None:
    sent = Sent()
    probe = Probe(Settings(topic_prefix="fuzz."), None, sent, None, "p", 1, SiteTable(0, 0))  # type: ignore[arg-type]

    async def run() -> None:
        for n, (k, v) in enumerate(rows):
            await probe.apply(Msg(NAMES.sites, 0, n, k, v))  # type: ignore[arg-type]
        await probe.apply(Msg(NAMES.sites, 0, len(rows), records.site_key(GOOD_SITE), good_site()))  # type: ignore[arg-type]

    asyncio.run(run())
    assert sent.dead_offsets(NAMES.sites) == poisoned("sites", rows)
    assert GOOD_SITE in probe.table


class NoCheck:
    """The verifier's checker, minus the network."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, spec: Any, checks: Any) -> list[Any]:
        self.runs += 1
        return []


@given(rows=batches["verify-requests"])
@FUZZ
def test_verifier_survives_any_verify_requests(
    rows: list[tuple[bytes | None, bytes | None]],
) -> None:
    sent, checker = Sent(), NoCheck()
    verifier = Verifier(Settings(topic_prefix="fuzz."), None, sent, checker, "eu", 4, 1e12)  # type: ignore[arg-type]
    good = records.encode(VALID["verify-requests"][0])

    async def run() -> None:
        verifier.book.ready.set()
        for n, (k, v) in enumerate(rows):
            await verifier.handle(Msg(NAMES.verify_requests, 0, n, k, v))  # type: ignore[arg-type]
        before = checker.runs
        await verifier.handle(Msg(NAMES.verify_requests, 0, len(rows), b"5", good))  # type: ignore[arg-type]
        assert checker.runs == before + 1

    asyncio.run(run())
    assert sent.dead_offsets(NAMES.verify_requests) == poisoned("verify-requests", rows)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    asyncio.run(upgrade(url))
    return url


_batch_no = iter(range(10**9))


def good_opened(n: int) -> records.Transition:
    return records.Transition(
        transition_id=f"good-t-{n}",
        event_id=f"good-e-{n}",
        site_id=GOOD_SITE,
        check_type=CheckType.HTTP,
        discriminator=f"d{n}",
        seq=1,
        reason="opened",  # type: ignore[arg-type]
        state_before="up",  # type: ignore[arg-type]
        state_after="seems_down",  # type: ignore[arg-type]
        severity_before=0,
        severity_after=3,
        started_at=VALID_T,
        at=VALID_T,
        source="local",
    )


def sink_batch(rows: list[tuple[bytes | None, bytes | None]], topic: str, n: int) -> list[Record]:
    base = n * 1000  # offsets of their own per example: the shared database keeps offsets
    msgs = [Record(topic, 0, base + i, k, v) for i, (k, v) in enumerate(rows)]
    good = good_opened(n)
    msgs.append(
        Record(NAMES.site_events, 1, base, records.site_key(GOOD_SITE), records.encode(good))
    )
    return msgs


@pytest.mark.parametrize("topic", ["site-events", "sites"])
def test_sink_survives_any_records(sqlite_db: str, topic: str) -> None:
    @given(rows=batches[topic])
    @DB_FUZZ
    def check(rows: list[tuple[bytes | None, bytes | None]]) -> None:
        n = next(_batch_no)
        full = NAMES.name(Topic(topic))
        msgs = sink_batch(rows, full, n)

        async def run() -> Any:
            engine = make_engine(sqlite_db)
            try:
                async with WriteGate(engine, True).transaction() as tx:
                    return await BatchApplier(NAMES, "fuzz.sink").apply(tx, msgs, 0)
            finally:
                await engine.dispose()

        res = asyncio.run(run())
        dead = {letter.offset - n * 1000 for letter, _ in res.dead_letters if letter.topic == full}
        assert dead >= poisoned(topic, rows)  # and decodable ones may contradict the database
        for letter, _ in res.dead_letters:
            assert (
                letter.offset - n * 1000 in poisoned(topic, rows) or "contradicts" in letter.error
            )
        assert res.counts["transitions"] >= 1  # the good one after them

    check()


def test_notifier_survives_any_site_events(sqlite_db: str) -> None:
    @given(rows=batches["site-events"])
    @DB_FUZZ
    def check(rows: list[tuple[bytes | None, bytes | None]]) -> None:
        from aiokafka import TopicPartition

        n = next(_batch_no)
        tp = TopicPartition(NAMES.site_events, 0)
        msgs = [Msg(tp.topic, 0, n * 1000 + i, k, v) for i, (k, v) in enumerate(rows)]
        sent = Sent()

        async def run() -> Counter[str]:
            notifier = Notifier(Settings(database_url=sqlite_db, topic_prefix="fuzz."))
            notifier.producer = sent  # type: ignore[assignment]
            try:
                await notifier.decide_batch({tp: msgs})
            finally:
                await notifier.engine.dispose()
            return Counter(notifier.counts)

        asyncio.run(run())
        dead = {o - n * 1000 for o in sent.dead_offsets(NAMES.site_events)}
        assert dead == poisoned("site-events", rows)

    check()


@given(rows=batches["check-results"], sites=batches["sites"])
@FUZZ
def test_replay_survives_any_records(
    rows: list[tuple[bytes | None, bytes | None]], sites: list[tuple[bytes | None, bytes | None]]
) -> None:
    t0 = timefmt.to_ms(VALID_T)
    window = Window(start_ms=t0 - 1000, end_ms=t0 + 60_000, lookback_ms=3_600_000, grace_ms=0)
    replay = Replay(Config(), NAMES, window)
    site_rows = [Record(NAMES.sites, 0, n, k, v) for n, (k, v) in enumerate(sites)]
    site_rows.append(Record(NAMES.sites, 0, len(sites), records.site_key(GOOD_SITE), good_site()))
    replay.add_sites(0, site_rows)
    for _, v in rows:
        record_stamp(v)  # never raises
    results = NAMES.check_results
    feed = [Record(results, 0, 0, records.site_key(GOOD_SITE), good_failure(), 1)]  # the start
    feed += [Record(results, 0, n + 1, k, v, 1) for n, (k, v) in enumerate(rows)]
    replay.feed(0, feed)
    replay.finish()
    assert any(t.site_id == GOOD_SITE for t in replay.result())


def test_record_stamp_and_what_if_never_raise() -> None:
    from sitewatch.streams.replay import parse_what_if

    what_if = parse_what_if(["num_of_checks=5"])
    for value in (b"[1]", b"{", b'{"site_id":' + b"[" * 5000, json.dumps([{"a": 1}]).encode()):
        assert record_stamp(value) is None
        with pytest.raises(Exception):  # noqa: B017 - any error; the caller treats it as poison
            what_if.rewrite(value)
    replay = Replay(Config(), NAMES, Window(0, 1, 0, 0), what_if)
    assert replay._rewrite(b"[1]") == b"[1]"
