"""`sitewatch sink` as a process, on the real Tansu broker and the real MariaDB."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch.migrations.command import upgrade
from sitewatch.sink import tables as t
from sitewatch.sink.db import make_engine
from sitewatch.sink.drift import check
from sitewatch.sink.gate import WriteGate
from sitewatch.streams import records
from sitewatch.streams.message import Record
from tests.kafka_util import RunningBroker

from . import synthetic
from .conftest import PrivateMariaDB, drop_mysql_db, new_mysql_db, snapshot
from .helpers import (
    feed,
    make_topics,
    produce,
    read_all,
    sink_env,
    start_sink,
    stored_offsets,
    wait_caught_up,
)

pytestmark = pytest.mark.integration

# small batches (more commit points to be killed between) and a short group session, so
# a restarted sink is admitted without waiting out its killed predecessor's session
FAST_RESTART = ("--batch-size", "2000", "--session-timeout-ms", "2000")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=30)


async def dead_letters(bootstrap: str, topic: str, want: int) -> list[records.DeadLetter]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[records.DeadLetter] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < want and time.monotonic() < deadline:
            data = await consumer.getmany(timeout_ms=500)
            for batch in data.values():
                found += [records.dead_letter_decoder.decode(m.value) for m in batch if m.value]
    finally:
        await consumer.stop()
    return found


def transitions_for(
    topic: str, items: list[records.Transition]
) -> list[tuple[str, bytes | None, bytes | None]]:
    return [(topic, records.site_key(x.site_id), records.encode(x)) for x in items]


async def test_sink_process_writes_rows_and_dead_letters_poison(
    broker: RunningBroker, engine: AsyncEngine, db_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    names = await make_topics(broker.bootstrap, unique_prefix)
    items = list(synthetic.transitions(random.Random(2), n_sites=20, count=500))
    site = records.SiteRecord(site_id=3, url="https://c.example", timeout_s=7)
    sends = transitions_for(names.site_events, items[:250])
    sends.append((names.site_events, b"4", b'{"poison": true}'))
    sends.append((names.sites, records.site_key(3), records.encode(site)))
    sends += transitions_for(names.site_events, items[250:])
    ends = await produce(broker.bootstrap, sends)
    proc = start_sink(sink_env(broker.bootstrap, db_url, unique_prefix), tmp_path / "sink.log")
    try:
        await wait_caught_up(engine, f"{unique_prefix}sink", ends, limit_s=60)
    finally:
        assert stop(proc) == 0  # SIGTERM: a clean stop
    snap = await snapshot(engine)
    assert len(snap["jetmon_event_transitions"]) == 500
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(t.sites).where(t.sites.c.site_id == 3))).one()
    assert (row.url, row.timeout_s) == ("https://c.example", 7)
    assert await check(WriteGate(engine, True)) == []
    (letter,) = await dead_letters(broker.bootstrap, f"{names.site_events}.dead-letter", 1)
    assert letter.value == '{"poison": true}' and "malformed transition" in letter.error
    assert letter.topic == names.site_events and letter.consumer == f"{unique_prefix}sink"


async def test_shadow_mode_process_leaves_tables_byte_identical(
    broker: RunningBroker, engine: AsyncEngine, db_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    names = await make_topics(broker.bootstrap, unique_prefix)
    items = list(synthetic.transitions(random.Random(4), n_sites=20, count=800))
    # the database already holds some history (written by a writing sink)
    ends = await produce(broker.bootstrap, transitions_for(names.site_events, items[:300]))
    history = await read_all(broker.bootstrap, [names.site_events], ends)
    await feed(engine, history, prefix=unique_prefix)
    before = await snapshot(engine)
    checksum_before = await _checksums(engine)
    sends = transitions_for(names.site_events, items[300:])
    sends.append((names.sites, records.site_key(99), None))  # a delete
    sends.append(
        (names.sites, records.site_key(5), records.encode(records.SiteRecord(site_id=5, url="u")))
    )
    ends = await produce(broker.bootstrap, sends)
    log = tmp_path / "shadow.log"
    proc = start_sink(sink_env(broker.bootstrap, db_url, unique_prefix, writes=False), log)
    try:
        # wait until the shadow sink reports having seen every message
        deadline = time.monotonic() + 60
        expected = len(sends)  # it resumes after the offsets stored with the history
        while _shadow_messages(log) < expected:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"shadow sink saw {_shadow_messages(log)}"
            await asyncio.sleep(0.3)
    finally:
        assert stop(proc) == 0
    assert await snapshot(engine) == before
    assert await _checksums(engine) == checksum_before
    reports = _shadow_reports(log)
    assert sum(r.get("transitions", 0) for r in reports) == 500
    assert sum(r.get("sites_deleted", 0) for r in reports) == 1
    assert sum(r.get("offsets", 0) for r in reports) > 0
    assert sum(r.get("dead_letters", 0) for r in reports) == 0


async def _checksums(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("CHECKSUM TABLE " + ", ".join(x.name for x in t.ALL_TABLES))
        )
        return {r[0]: r[1] for r in rows}


def _shadow_reports(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        if '"shadow mode: would write"' in line:
            out.append(json.loads(line))
    return out


def _shadow_messages(log: Path) -> int:
    return sum(int(r.get("messages", 0)) for r in _shadow_reports(log))


@pytest.mark.slow
async def test_invariant_11_sink_sigkill_loses_and_duplicates_nothing(
    broker: RunningBroker, engine: AsyncEngine, db_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    """SIGKILL the sink ≥10 times mid-run over 50,000 transitions; compare with a clean run."""
    names = await make_topics(broker.bootstrap, unique_prefix)
    count = 50_000
    items = list(synthetic.transitions(random.Random(1111), n_sites=1000, count=count))
    sends = transitions_for(names.site_events, items)
    for site_id in range(1, 60):  # settings interleaved with the transitions
        rec = records.SiteRecord(site_id=site_id, url=f"https://s{site_id}.example")
        sends.insert(site_id * 700, (names.sites, records.site_key(site_id), records.encode(rec)))
    ends = await produce(broker.bootstrap, sends)
    group = f"{unique_prefix}sink"
    env = sink_env(broker.bootstrap, db_url, unique_prefix)
    rng = random.Random(7)
    kills = 0
    progress_at_kill: list[int] = []
    log = tmp_path / "sink.log"
    while kills < 10:
        before = sum((await stored_offsets(engine, group)).values())
        proc = start_sink(env, log, *FAST_RESTART)
        # wait for this incarnation to commit something, then kill it at a random moment
        deadline = time.monotonic() + 60
        while sum((await stored_offsets(engine, group)).values()) == before:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "sink made no progress"
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        progress_at_kill.append(sum((await stored_offsets(engine, group)).values()))
    assert progress_at_kill[-1] < sum(ends.values()), "the run ended before the 10th kill"
    proc = start_sink(env, log, *FAST_RESTART)
    try:
        await wait_caught_up(engine, group, ends, limit_s=120)
    finally:
        assert stop(proc) == 0
    # the uninterrupted run: the same records, the same code path, no kills

    name, url = new_mysql_db()
    clean = make_engine(url)
    try:
        await upgrade(url)
        everything = await read_all(broker.bootstrap, [names.site_events, names.sites], ends)
        await feed(clean, everything, batch=5000, prefix=unique_prefix)
        killed = await snapshot(engine, volatile=False)
        reference = await snapshot(clean, volatile=False)
    finally:
        await clean.dispose()
        drop_mysql_db(name)
    assert len(killed["jetmon_event_transitions"]) == count
    assert killed == reference  # sites, events, transitions (with kafka coords), offsets
    assert {(r[1], r[2]): r[3] for r in killed["sitewatch_offsets"]} == ends
    assert await check(WriteGate(engine, True)) == []


@pytest.mark.slow
async def test_mariadb_restart_mid_run_loses_and_duplicates_nothing(
    broker: RunningBroker,
    private_mariadb: PrivateMariaDB,
    unique_prefix: str,
    tmp_path: Path,
) -> None:
    """Kill our own mariadbd mid-run and start it again: the sink retries and resumes."""
    private_mariadb.execute("CREATE DATABASE sink CHARACTER SET utf8mb4")
    url = f"{private_mariadb.server_url}/sink"
    await upgrade(url)
    names = await make_topics(broker.bootstrap, unique_prefix)
    items = list(synthetic.transitions(random.Random(2024), n_sites=500, count=30_000))
    ends = await produce(broker.bootstrap, transitions_for(names.site_events, items))
    group = f"{unique_prefix}sink"
    engine = make_engine(url)
    log = tmp_path / "sink.log"
    proc = start_sink(sink_env(broker.bootstrap, url, unique_prefix), log, *FAST_RESTART)
    try:
        deadline = time.monotonic() + 60
        while sum((await stored_offsets(engine, group)).values()) == 0:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        private_mariadb.kill()
        await engine.dispose()  # the pool's connections died with the server
        await asyncio.sleep(3)  # the sink is retrying against nothing meanwhile
        assert proc.poll() is None, "the sink must survive the database going away"
        private_mariadb.start()
        await wait_caught_up(engine, group, ends, limit_s=120)
    finally:
        code = stop(proc)
    assert code == 0
    assert "database unavailable, retrying" in log.read_text()
    name, ref_url = new_mysql_db()
    clean = make_engine(ref_url)
    try:
        await upgrade(ref_url)
        everything = await read_all(broker.bootstrap, [names.site_events], ends)
        await feed(clean, everything, batch=5000, prefix=unique_prefix)
        reference = await snapshot(clean, volatile=False)
    finally:
        await clean.dispose()
        drop_mysql_db(name)
    restarted = await snapshot(engine, volatile=False)
    assert len(restarted["jetmon_event_transitions"]) == 30_000
    assert restarted == reference
    assert await check(WriteGate(engine, True)) == []
    await engine.dispose()


async def test_record_refused_by_the_database_is_dead_lettered_and_the_rest_applied(
    broker: RunningBroker, engine: AsyncEngine, db_url: str, unique_prefix: str
) -> None:
    """A record the checks let through but MariaDB refuses with a non-transient error that
    is neither an integrity nor a data error (4025, as for JSON nested too deep): split,
    the refused one dead-lettered, the rest applied. It used to stop the sink for good."""
    from aiokafka import AIOKafkaProducer

    from sitewatch.settings import Settings
    from sitewatch.sink.consumer import Sink

    names = await make_topics(broker.bootstrap, unique_prefix)
    items = list(synthetic.transitions(random.Random(8), n_sites=3, count=40))
    opened = next(i for i, x in enumerate(items) if x.reason.value == "opened")
    bad = msgspec.structs.replace(
        items[opened], event_id="poison", transition_id="poison:1", discriminator="poison"
    )
    # stands for any refusal the wire limits cannot foresee
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON jetmon_event_transitions "
            "FOR EACH ROW BEGIN IF NEW.transition_id = 'poison:1' THEN "
            "SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 4025, MESSAGE_TEXT = 'refused (test)'; "
            "END IF; END"
        )
    sequence = [*items[:20], bad, *items[20:]]
    msgs = [
        Record(names.site_events, 0, n, records.site_key(x.site_id), records.encode(x))
        for n, x in enumerate(sequence)
    ]
    conf = Settings(
        database_url=db_url, topic_prefix=unique_prefix, kafka_bootstrap=broker.bootstrap
    )
    sink = Sink(conf, engine=engine)
    sink.producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await sink.producer.start()
    try:
        result = await sink.process(msgs)
    finally:
        await sink.producer.stop()
    assert result.counts["transitions"] == 40 and result.counts["dead_letters"] == 1
    snap = await snapshot(engine)
    assert len(snap["jetmon_event_transitions"]) == 40
    assert [r[3] for r in snap["sitewatch_offsets"]] == [41]
    (letter,) = await dead_letters(broker.bootstrap, f"{names.site_events}.dead-letter", 1)
    assert letter.offset == 20 and "refused by the database" in letter.error
    assert "refused (test)" in letter.error and "INSERT" not in letter.error
    assert await check(WriteGate(engine, True)) == []
