"""A running sitewatch pipeline for end-to-end tests: the real CLI processes (probe,
verifiers, worker, sink, and the notifier when asked) against a real broker and MariaDB,
checking the local fleet with short intervals. Everything is asserted through SQL and
the topics.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
from aiokafka import AIOKafkaConsumer, TopicPartition

from sitewatch.migrations.command import upgrade
from sitewatch.probes.fleet import Fleet, SiteScript
from sitewatch.streams import records
from sitewatch.streams.kafka_admin import ensure_topics, partitions_of
from sitewatch.streams.topics import TopicNames
from tests import mysql_util
from tests.conftest import MYSQL_SERVER_URL
from tests.kafka_util import produce, spawn, stop

PARTITIONS = 4
VERIFIERS = ("eu", "us")


@dataclass
class Pipeline:
    bootstrap: str
    names: TopicNames
    db: str
    fleet: Fleet
    fleet_names: dict[int, str]
    logs: Path
    procs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def query(self, sql: str, *args: object) -> list[dict[str, Any]]:
        return mysql_util.rows(self.db, sql, *args)

    async def sql(self, sql: str, *args: object) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query, sql, *args)

    async def wait_sql(
        self,
        sql: str,
        *args: object,
        until: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout_s: float = 60,
        what: str = "",
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await self.sql(sql, *args)
            if until(rows):
                return rows
            if time.monotonic() > deadline:
                tails = {n: (self.logs / f"{n}.log").read_text()[-1500:] for n in self.procs}
                raise AssertionError(f"timed out waiting for {what or sql}: {rows}\n{tails}")
            await asyncio.sleep(0.1)

    async def events(self, site_id: int) -> list[dict[str, Any]]:
        return await self.sql(
            "SELECT * FROM jetmon_events WHERE site_id = %s ORDER BY started_at", site_id
        )

    async def site_row(self, site_id: int) -> dict[str, Any]:
        rows = await self.sql("SELECT * FROM jetpack_monitor_sites WHERE site_id = %s", site_id)
        return rows[0]

    async def transitions_topic(self) -> list[records.Transition]:
        rows = await read_to_end(self.bootstrap, self.names.site_events)
        return [records.transition_decoder.decode(v) for _, v in rows if v is not None]

    async def results_topic(self, site_id: int) -> list[records.CheckResult]:
        rows = await read_to_end(self.bootstrap, self.names.check_results)
        out = []
        for key, value in rows:
            if key != records.site_key(site_id) or value is None:
                continue
            rec = records.input_decoder.decode(value)
            if isinstance(rec, records.CheckResult):
                out.append(rec)
        return out


async def read_to_end(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of `topic` written before the call.

    A partition is read when its position reached the end offset of the call and it
    either gave a record stamped after the call or nothing for a second. ("Until idle"
    alone never ends on `check-results`, which gets ticks all the time, and Tansu may
    under-report an end offset, docs/contract.md.)"""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        # an out-of-range answer (seen on Tansu right after seek_to_beginning) must not
        # jump to the end and skip history
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        called_ms = time.time_ns() // 1_000_000
        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[bytes | None, bytes | None]] = []
        fresh: set[TopicPartition] = set()
        last = dict.fromkeys(tps, time.monotonic())
        deadline = time.monotonic() + 30
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, msgs in batch.items():
                last[tp] = time.monotonic()
                for m in msgs:
                    if m.timestamp > called_ms:
                        fresh.add(tp)
                    else:
                        out.append((m.key, m.value))
            pending = [
                tp
                for tp in tps
                if await consumer.position(tp) < ends[tp]
                or (tp not in fresh and time.monotonic() - last[tp] < 1.0)
            ]
            if not pending:
                return out
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
    finally:
        await consumer.stop()


def naive(ts: str) -> datetime:
    """A wire timestamp as MySQL's naive UTC DATETIME(3)."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def site_record(site_id: int, url: str, **kw: Any) -> tuple[bytes, bytes]:
    rec = records.SiteRecord(
        site_id=site_id,
        url=url,
        check_interval_s=2,
        timeout_s=2,
        recheck_interval_s=1,
        num_of_checks=kw.pop("num_of_checks", 2),
        peer_offline_limit=len(VERIFIERS),
        verify_timeout_s=6,
        **kw,
    )
    return records.site_key(site_id), records.encode(rec)


@contextmanager
def scratch_database(label: str = "e2e") -> Iterator[str]:
    """A database of its own on the machine's MariaDB, dropped afterwards."""
    name = f"sw_{label}_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


#: one site of a pipeline: (site_id, fleet name, script, TLS days or None, site fields)
PlanRow = tuple[int, str, SiteScript, float | None, dict[str, Any]]


def default_commands(notify: bool = False) -> dict[str, list[str]]:
    commands = {
        "sink": ["sink", "--session-timeout-ms", "2000"],
        "worker": ["worker"],
        "probe": ["probe", "--name", "primary", "--max-initial-delay", "0.5"],
        **{f"verifier-{v}": ["verifier", "--name", v] for v in VERIFIERS},
    }
    if notify:
        commands["notify"] = ["notify"]
    return commands


@asynccontextmanager
async def running_pipeline(
    bootstrap: str,
    db: str,
    base: Path,
    plan: list[PlanRow],
    commands: dict[str, list[str]] | None = None,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Pipeline]:
    """Start the fleet and the processes; yield once the sink has every site's row."""
    prefix = f"e2e{uuid.uuid4().hex[:6]}."
    names = TopicNames(prefix)
    url = f"{MYSQL_SERVER_URL}/{db}"
    await upgrade(url)  # `sitewatch migrate` itself runs in test_dev / the sink tests
    fleet = await Fleet().start()
    rows = []
    fleet_names = {}
    for site_id, name, script, tls_days, extra in plan:
        site = await fleet.add(name, script, tls_days=tls_days)
        fleet_names[site_id] = name
        rows.append(site_record(site_id, site.url, **extra))
    ca = fleet.write_ca(base / "fleet-ca.pem")
    await ensure_topics([bootstrap], names, PARTITIONS)
    await produce(bootstrap, names.sites, rows)
    env = {
        "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_PARTITIONS": str(PARTITIONS),
        "SITEWATCH_STATE_DIR": str(base / "state"),
        "SITEWATCH_DATABASE_URL": url,
        "SITEWATCH_VERIFIERS": ",".join(VERIFIERS),
        "SITEWATCH_TICK_INTERVAL_S": "0.5",
        "SITEWATCH_PROBE_ALLOW_PRIVATE": "1",
        "SITEWATCH_PROBE_EXTRA_CA": str(ca),
        "SITEWATCH_LOG_FORMAT": "json",
        **(extra_env or {}),
    }
    pipe = Pipeline(bootstrap, names, db, fleet, fleet_names, base, env=env)
    for name, argv in (commands or default_commands()).items():
        pipe.procs[name] = spawn(argv, env, base / f"{name}.log")
    try:
        # ready: the sink has materialized every site
        await pipe.wait_sql(
            "SELECT site_id FROM jetpack_monitor_sites WHERE url <> ''",
            until=lambda r: len(r) == len(plan),
            timeout_s=90,
            what="site rows",
        )
        yield pipe
    finally:
        codes = {name: stop(proc) for name, proc in pipe.procs.items()}
        await fleet.close()
        assert all(code == 0 for code in codes.values()), codes
