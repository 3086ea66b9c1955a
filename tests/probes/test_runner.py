"""`probes/runner.py`: what the probe and the verifier share, in process."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from sitewatch.probes.checks import Checker
from sitewatch.probes.probe import Probe
from sitewatch.probes.runner import polled, supervise
from sitewatch.probes.schedule import SiteTable
from sitewatch.probes.verifier import Verifier
from sitewatch.settings import Settings
from sitewatch.streams import records
from sitewatch.streams.message import Record

SITES = "t.sites"


class Sent:
    """Stands in for the producer: keeps the dead letters sent."""

    def __init__(self) -> None:
        self.letters: list[records.DeadLetter] = []

    async def send_and_wait(self, topic: str, value: bytes | None = None, *_: Any) -> None:
        assert topic.endswith(".dead-letter") and value is not None
        self.letters.append(records.dead_letter_decoder.decode(value))


def _parts(sent: Sent) -> tuple[Any, ...]:
    return (Settings(topic_prefix="t."), None, cast(AIOKafkaProducer, sent), None)


def site_msg(offset: int, site_id: int, value: bytes | None) -> Record:
    return Record(SITES, 0, offset, records.site_key(site_id), value)


def site_value(site_id: int, **kw: Any) -> bytes:
    return records.encode(records.SiteRecord(site_id=site_id, url="http://127.0.0.1:9/", **kw))


async def test_poison_sites_records_are_dead_lettered_under_each_process_name() -> None:
    sent = Sent()
    conf, consumer, producer, checker = _parts(sent)
    probe = Probe(conf, consumer, producer, checker, "p1", 1, SiteTable(0, 0))
    verifier = Verifier(conf, consumer, producer, checker, "eu", 1, 300.0)
    wrong_key = Record(SITES, 0, 1, records.site_key(2), site_value(3))
    await probe.apply(wrong_key)
    assert await verifier.keyed_site(wrong_key) is None
    assert [(d.consumer, d.offset) for d in sent.letters] == [
        ("t.probes:p1", 1),
        ("t.verifier.eu", 1),
    ]
    assert "key 2 != site_id 3" in sent.letters[0].error
    assert probe.stats["dead_lettered"] == verifier.stats["dead_lettered"] == 1


async def test_the_probe_dead_letters_a_poison_record_once_over_re_reads() -> None:
    sent = Sent()
    conf, consumer, producer, checker = _parts(sent)
    probe = Probe(conf, consumer, producer, checker, "p1", 1, SiteTable(0, 0))
    poison = Record(SITES, 0, 0, b"not-a-site-id", b"{}")
    await probe.apply(poison)
    await probe.apply(site_msg(1, 5, site_value(5)))
    await probe.apply(poison)  # the partition read again from the beginning
    assert len(sent.letters) == 1 and 5 in probe.table


async def test_the_verifier_keeps_only_sites_with_headers() -> None:
    sent = Sent()
    conf, consumer, producer, checker = _parts(sent)
    verifier = Verifier(conf, consumer, producer, cast(Checker, checker), "eu", 1, 300.0)
    for msg in (
        site_msg(0, 1, site_value(1, custom_headers={"Authorization": "Bearer x"})),
        site_msg(1, 2, site_value(2)),
    ):
        keyed = await verifier.keyed_site(msg)
        assert keyed is not None
        verifier.book.keep(*keyed)
    assert set(verifier.book.sites) == {1}
    keyed = await verifier.keyed_site(site_msg(2, 1, None))  # a tombstone
    assert keyed == (1, None)
    verifier.book.keep(*keyed)
    assert verifier.book.sites == {} and sent.letters == []


class Polls:
    """Stands in for a consumer: hands out scripted polls, then empty ones."""

    def __init__(self, *polls: list[Record]) -> None:
        self.polls = list(polls)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[int, list[Record]]:
        await asyncio.sleep(0)
        return {0: self.polls.pop(0)} if self.polls else {}


async def test_polled_hands_over_every_poll_in_order_until_the_stop() -> None:
    first, second = site_msg(0, 1, None), site_msg(1, 2, None)
    stop = asyncio.Event()
    seen: list[list[Record]] = []
    async for msgs in polled(cast(AIOKafkaConsumer, Polls([first, second], [])), stop):
        seen.append(cast(list[Record], msgs))
        if len(seen) == 3:
            stop.set()
    assert seen == [[first, second], [], []]


async def test_supervise_returns_1_when_a_task_dies_and_cancels_the_others() -> None:
    log = structlog.get_logger("test")
    stop = asyncio.Event()

    async def dies() -> None:
        raise RuntimeError("boom")

    forever = asyncio.create_task(asyncio.sleep(3600))
    code = await supervise([asyncio.create_task(dies()), forever], stop, log, "died")
    assert code == 1 and forever.cancelled() and stop.is_set()


async def test_supervise_returns_0_on_the_stop() -> None:
    stop = asyncio.Event()
    forever = asyncio.create_task(asyncio.sleep(3600))
    asyncio.get_running_loop().call_later(0.01, stop.set)
    assert await supervise([forever], stop, structlog.get_logger("test"), "died") == 0
    assert forever.cancelled()
