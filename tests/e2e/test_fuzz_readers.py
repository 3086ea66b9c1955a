"""Issue 11: hostile records on every topic, read by the real processes on the real broker.

A corpus drawn by hypothesis (random bytes and JSON, mutated valid records) plus the
attacks of the issue (a ~2 KB record nested 1,000 deep, 200 KB of control bytes, a
900 KB value, impossible dates, fields longer than their columns, misrouted keys) is
written to `sites`, `check-results`, `verify-requests` and `site-events` before the
processes start. Then good records follow. Every reader (worker, probe, verifier,
sink, notifier, and `sitewatch replay`) must stay alive, dead-letter every record the
wire contract refuses, and process the good records after them: a failing site is
checked, opens and is promoted to down, lands in MariaDB and is notified.

One drawn corpus per run (the processes take ~20 s to come up): each CI run tries
another; a failure prints the seed to reproduce it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from hypothesis import Phase, given, settings

from sitewatch import crypto
from sitewatch.devbroker import free_port
from sitewatch.migrations.command import upgrade
from sitewatch.notify import signing
from sitewatch.streams import records, timefmt
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import Topic, TopicNames
from tests.hardening.hostile import VALID, hostile, poison
from tests.kafka_util import SITEWATCH, RunningBroker, read_all, spawn, stop
from tests.sink.conftest import drop_mysql_db, new_mysql_db

pytestmark = pytest.mark.integration

PARTITIONS = 2
GOOD = 4242
SECRET = "fuzz-webhook-secret-0123456789"
#: who reads each topic, and so must dead-letter its poison
READERS: dict[str, tuple[str, ...]] = {
    "sites": ("worker", "probe", "verifier", "sink"),
    "check-results": ("worker",),
    "verify-requests": ("verifier",),
    "site-events": ("sink", "notify"),
}


def fixed_attacks(topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """The issue's own examples, in every run."""
    valid = json.loads(records.encode(VALID[topic][0]))
    key = b"5"

    def with_(**changes: Any) -> bytes:
        return json.dumps({**valid, **changes}).encode()

    deep = json.dumps(valid).encode()[:-1] + b',"x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    rows: list[tuple[bytes | None, bytes | None]] = [
        (key, deep),  # ~2 KB, a RecursionError in msgspec
        (key, bytes(range(32)) * 6400),  # 200 KB of control bytes
        (key, b"x" * 900_000),  # close to the broker's 1 MiB
        (key, b"{"),
        (b"not-a-site", json.dumps(valid).encode()),  # misrouted / bad key
    ]
    stamps = [f for f in valid if f in ("at", "observed_at", "issued_at", "requested_at")]
    for field in stamps[:1]:
        rows.append((key, with_(**{field: "2026-02-30T00:00:00.000Z"})))
    long_fields = {
        "sites": {"keyword": "k" * 1025},
        "check-results": {"probe": "p" * 300},
        "verify-requests": {"url": "http://x/" + "u" * 3000},
        "site-events": {"source": "operator:" + "a" * 400},
    }
    rows.append((key, with_(**long_fields[topic])))
    if topic == "site-events":
        rows.append((key, with_(severity_after=99)))
        rows.append((key, with_(metadata={"x": json.loads("[" * 40 + "]" * 40)})))
    return rows


def drawn(topic: str, n: int = 40) -> list[tuple[bytes | None, bytes | None]]:
    """Hostile records of `topic` as hypothesis generates them over `n` examples (its
    first examples are the simplest; collecting many gives the variety)."""
    found: list[tuple[bytes | None, bytes | None]] = []

    @given(hostile(topic))
    @settings(max_examples=n, phases=[Phase.generate], database=None, deadline=None)
    def collect(item: tuple[bytes | None, bytes | None]) -> None:
        found.append(item)

    collect()
    return list(dict.fromkeys(found))


def test_hostile_records_on_every_topic_stop_no_reader(
    broker: RunningBroker, unique_prefix: str, tmp_path: Path
) -> None:
    corpus = {topic: drawn(topic) for topic in READERS}
    # what cannot be written never reaches a reader: a keyless record on the compacted
    # `sites` (the broker refuses it), a record with neither key nor value (the client)
    corpus["sites"] = [(k, v) for k, v in corpus["sites"] if k is not None]
    corpus = {
        t: [(k, v) for k, v in rows if k is not None or v is not None] for t, rows in corpus.items()
    }
    asyncio.run(scenario(broker, unique_prefix, tmp_path, corpus))


class Hook:
    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not signing.verify(SECRET, body, request.headers.get(signing.SIGNATURE_HEADER, "")):
            return web.Response(status=401)
        self.got.append(json.loads(body))
        return web.Response(status=204)


async def serve(routes: Callable[[web.Application], object], port: int) -> web.AppRunner:
    app = web.Application()
    routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def produce(
    bootstrap: str, topic: str, rows: list[tuple[bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """(partition, offset) of each row, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        out = []
        for key, value in rows:
            meta = await producer.send_and_wait(topic, value, key=key)
            out.append((meta.partition, meta.offset))
        return out
    finally:
        await producer.stop()


def query(db: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(
        host="127.0.0.1", user="root", password="", database=db.rsplit("/", 1)[1], autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


async def scenario(
    broker: RunningBroker,
    prefix: str,
    tmp_path: Path,
    corpus: dict[str, list[tuple[bytes | None, bytes | None]]],
) -> None:
    names = TopicNames(prefix)
    name, db = new_mysql_db()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    runners: list[web.AppRunner] = []
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    try:
        await upgrade(db)
        await ensure_topics(broker.bootstrap, names, PARTITIONS)
        hook, target_port = Hook(), free_port()

        async def failing(request: web.Request) -> web.Response:
            return web.Response(status=503, text="down on purpose")

        runners.append(await serve(lambda a: a.router.add_post("/hook", hook.handle), hook.port))
        runners.append(await serve(lambda a: a.router.add_get("/", failing), target_port))
        target = f"http://127.0.0.1:{target_port}/"
        env = {
            "SITEWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
            "SITEWATCH_TOPIC_PREFIX": prefix,
            "SITEWATCH_PARTITIONS": str(PARTITIONS),
            "SITEWATCH_STATE_DIR": str(tmp_path / "state"),
            "SITEWATCH_DATABASE_URL": db,
            "SITEWATCH_PROBE_ALLOW_PRIVATE": "1",
            "SITEWATCH_SECRET_KEY": crypto.new_key(),
            "SITEWATCH_TICK_INTERVAL_S": "0.5",
            "SITEWATCH_NOTIFY_RETRY_SCALE": "0.01",
            "SITEWATCH_LOG_FORMAT": "json",
        }
        added = await asyncio.to_thread(
            subprocess.run,
            [
                SITEWATCH,
                "webhooks",
                "add",
                f"http://127.0.0.1:{hook.port}/hook",
                "--secret-file",
                "-",
            ],
            env={**os.environ, **env},
            input=SECRET.encode(),
            capture_output=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr

        # 1. the poison, first in every partition the readers will read
        bad: dict[str, set[tuple[int, int]]] = {}
        for short in READERS:
            rows = fixed_attacks(short) + corpus[short]
            topic = names.name(Topic(short))
            placed = await produce(broker.bootstrap, topic, rows)
            bad[short] = {
                where for (k, v), where in zip(rows, placed, strict=True) if poison(short, k, v)
            }
            assert len(bad[short]) >= len(fixed_attacks(short))

        # 2. every reader, as a process
        commands = {
            "worker": ["worker"],
            "probe": ["probe", "--name", "fuzz", "--max-initial-delay", "1"],
            "verifier": ["verifier", "--name", "eu"],
            "sink": ["sink"],
            "notify": ["notify", "--from-beginning"],
        }
        for role, argv in commands.items():
            procs[role] = spawn(argv, env, logs / f"{role}.log")

        # 3. good records after the poison
        site = records.SiteRecord(
            site_id=GOOD, url=target, check_interval_s=2, recheck_interval_s=2, num_of_checks=1
        )
        await produce(
            broker.bootstrap, names.sites, [(records.site_key(GOOD), records.encode(site))]
        )
        request = records.VerifyRequest(
            request_id="fuzz-good-request",
            site_id=GOOD,
            check_type="http",  # type: ignore[arg-type]
            event_id="fuzz-good-event",
            url=target,
            timeout_s=5,
            requested_at=timefmt.from_ms(time.time_ns() // 1_000_000),
        )
        await produce(
            broker.bootstrap,
            names.verify_requests,
            [(records.site_key(GOOD), records.encode(request))],
        )

        def alive() -> None:
            for role, proc in procs.items():
                assert proc.poll() is None, (
                    f"{role} died:\n" + (logs / f"{role}.log").read_text()[-4000:]
                )

        async def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 120) -> None:
            deadline = time.monotonic() + timeout_s
            while True:
                alive()
                if await check():
                    return
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(1.0)

        async def topic_values(topic: str) -> list[bytes]:
            return [v for _, v, _, _ in await read_all(broker.bootstrap, topic, idle_s=0.3) if v]

        async def results_of_good() -> list[records.CheckResult]:
            found = []
            for value in await topic_values(names.check_results):
                try:
                    rec = records.decode_input(value)
                except Exception:
                    continue
                if isinstance(rec, records.CheckResult) and rec.site_id == GOOD:
                    found.append(rec)
            return found

        async def probed() -> bool:
            return any(r.role.value == "primary" for r in await results_of_good())

        async def verified() -> bool:
            return any(r.request_id == "fuzz-good-request" for r in await results_of_good())

        async def promoted() -> bool:
            for value in await topic_values(names.site_events):
                try:
                    tr = records.decode_transition(value)
                except Exception:
                    continue
                if tr.site_id == GOOD and tr.reason.value == "verifier_confirmed":
                    return True
            return False

        async def stored() -> bool:
            rows = await asyncio.to_thread(
                query, db, "SELECT state FROM jetmon_events WHERE site_id=%s", GOOD
            )
            return ("down",) in rows

        async def notified() -> bool:
            return any(p["site_id"] == GOOD and p["type"] == "site.down" for p in hook.got)

        await wait_for(probed, "the probe to check the good site")
        await wait_for(verified, "the verifier to answer the good request")
        await wait_for(promoted, "the worker to promote the good site")
        await wait_for(stored, "the sink to store the good site's event")
        await wait_for(notified, "the notifier to deliver the good site's down")

        # 4. every poison record was dead-lettered by every reader of its topic
        consumers = {
            "worker": f"{prefix}worker",
            "probe": f"{prefix}probes:fuzz",
            "verifier": f"{prefix}verifier.eu",
            "sink": f"{prefix}sink",
            "notify": f"{prefix}notify",
        }
        for short, readers in READERS.items():
            topic = names.name(Topic(short))
            letters: dict[str, set[tuple[int, int]]] = defaultdict(set)
            for value in await topic_values(names.dead_letter(topic)):
                letter = records.dead_letter_decoder.decode(value)
                assert len(value) < 64 * 1024  # bounded, whatever the record was
                assert "s3cr3t" not in value.decode("utf-8", "replace")  # redacted
                letters[letter.consumer].add((letter.partition, letter.offset))
            for reader in readers:
                got = letters[consumers[reader]]
                missing = bad[short] - got
                assert not missing, f"{reader} did not dead-letter {sorted(missing)} of {short}"
                if reader != "sink":  # the sink also dead-letters what contradicts the database
                    assert got <= bad[short], f"{reader} dead-lettered good records of {short}"
        alive()

        # 5. replay over the same poisoned log
        now = time.time_ns() // 1_000_000
        replay = await asyncio.to_thread(
            subprocess.run,
            [
                SITEWATCH,
                "replay",
                "--from",
                timefmt.from_ms(now - 3_600_000),
                "--to",
                timefmt.from_ms(now + 60_000),
                "--site",
                str(GOOD),
                "--quiet",
            ],
            env={**os.environ, **env},
            capture_output=True,
            timeout=300,
        )
        assert replay.returncode == 0, replay.stderr.decode()[-3000:]
        reasons = {json.loads(line)["reason"] for line in replay.stdout.decode().splitlines()}
        assert {"opened", "verifier_confirmed"} <= reasons
        for role in list(procs):
            code = stop(procs.pop(role))
            assert code == 0, (
                f"{role} exited {code}:\n" + (logs / f"{role}.log").read_text()[-3000:]
            )
    finally:
        for role, proc in procs.items():
            code = stop(proc)
            if code not in (0, None):
                print(f"{role} exited {code}:\n" + (logs / f"{role}.log").read_text()[-2000:])
        for runner in runners:
            await runner.cleanup()
        drop_mysql_db(name)
