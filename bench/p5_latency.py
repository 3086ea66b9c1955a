"""P5: latency from publishing a site's first failing result to its committed MySQL row.

Run from the repository root: `.venv/bin/python bench/p5_latency.py [--duration 60]`.

Starts a broker (`--broker`: the bundled Tansu broker, Apache Kafka from
scripts/apache_kafka.py, or both one after the other), a scratch database on
127.0.0.1:3306 (migrated), and
`sitewatch worker` and `sitewatch sink` as processes, exactly as deployed. Then, while a
background load of `--rate` healthy results/s (3,333/s: 1M sites checked every 5 minutes)
runs for `--duration` seconds, it publishes one failing result for a fresh site every
`--every` seconds and measures the time until that site's `jetmon_events` row is visible
to another MySQL connection (i.e. committed), polled every 5 ms, and splits it at the
timestamp the worker gave the transition on `site-events` (all on one wall clock).
Prints p50/p90/p99/max, how many samples never arrived, and the background rate
actually achieved.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pymysql
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.apache_kafka import KafkaNode
from sitewatch.devbroker import Broker
from sitewatch.migrations.command import upgrade
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType, ErrorKind
from sitewatch.streams.kafka_admin import ensure_topics, partitions_of
from sitewatch.streams.topics import TopicNames

SITEWATCH = str(Path(sys.executable).with_name("sitewatch"))
SAMPLE_BASE = 10_000_000  # sample site ids start here; background sites are 1..N


def admin(sql: str, db: str | None = None) -> list[tuple[object, ...]]:
    conn = pymysql.connect(
        host="127.0.0.1", port=3306, user="root", password="", database=db, autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def result(site_id: int, ok: bool) -> bytes:
    return records.encode(
        records.CheckResult(
            result_id=uuid.uuid4().hex,
            site_id=site_id,
            check_type=CheckType.HTTP,
            ok=ok,
            observed_at=timefmt.from_ms(now_ms()),
            probe="bench",
            error=ErrorKind.NONE if ok else ErrorKind.CONNECT,
        )
    )


class Watcher(threading.Thread):
    """Polls MySQL for the sample sites' event rows; notes when each first shows."""

    def __init__(self, db: str) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=3306,
            user="root",
            password="",
            database=self.db,
            autocommit=True,
        )
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute(
                        "SELECT site_id FROM jetmon_events WHERE site_id >= %s", (SAMPLE_BASE,)
                    )
                    at = time.time()
                    for (site_id,) in cur.fetchall():
                        self.seen.setdefault(int(site_id), at)
                    time.sleep(0.005)
        finally:
            conn.close()


#: `--fetch-wait-ms`: run the CLI with every aiokafka consumer's fetch wait forced (an
#: experiment: Faust hard-codes 1500 ms, the sink uses aiokafka's default 500 ms)
LAUNCHER = """
import sys, aiokafka
class Consumer(aiokafka.AIOKafkaConsumer):
    def __init__(self, *args, **kwargs):
        kwargs["fetch_max_wait_ms"] = {wait}
        super().__init__(*args, **kwargs)
aiokafka.AIOKafkaConsumer = Consumer
from sitewatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def spawn(
    args: list[str], env: dict[str, str], log: Path, fetch_wait_ms: int | None = None
) -> subprocess.Popen[bytes]:
    cmd = (
        [SITEWATCH]
        if fetch_wait_ms is None
        else [sys.executable, "-c", LAUNCHER.format(wait=int(fetch_wait_ms))]
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [*cmd, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def observe_events(bootstrap: str, topic: str, seen: dict[int, float]) -> None:
    """When each sample site's first transition was sent to `site-events` by the worker:
    the record's timestamp (CreateTime, the worker producer's wall clock), not when this
    consumer happens to read it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        parts = await partitions_of(bootstrap, topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for msgs in batches.values():
                for msg in msgs:
                    site_id = int(msg.key or b"0")
                    if site_id >= SAMPLE_BASE:
                        seen.setdefault(site_id, msg.timestamp / 1000)
    finally:
        await consumer.stop()


async def wait_row(watcher: Watcher, site_id: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while site_id not in watcher.seen:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def bench(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="p5-"))
    db = f"sw_p5_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    procs: list[subprocess.Popen[bytes]] = []
    broker_cm: Any = (
        KafkaNode(data_dir=work / "kafka")
        if args.broker == "kafka"
        else Broker(log_path=work / "tansu.log")
    )
    print(f"== broker: {args.broker}", flush=True)
    with broker_cm as broker:
        try:
            url = f"mysql+asyncmy://root@127.0.0.1:3306/{db}"
            await upgrade(url)
            names = TopicNames("p5.")
            await ensure_topics([broker.bootstrap], names, args.partitions)
            producer = AIOKafkaProducer(
                bootstrap_servers=broker.bootstrap, linger_ms=5, max_batch_size=256 * 1024
            )
            await producer.start()
            samples = int(args.duration / args.every) + 10
            sample_ids = [SAMPLE_BASE + i for i in range(samples + 1)]
            site_ids = list(range(1, args.sites + 1)) + sample_ids
            futs = []
            for sid in site_ids:
                rec = records.SiteRecord(site_id=sid, url=f"http://s{sid}.example/")
                futs.append(
                    await producer.send(names.sites, records.encode(rec), key=records.site_key(sid))
                )
            await asyncio.gather(*futs)
            print(f"published {len(site_ids)} sites", flush=True)

            env = {
                **os.environ,
                "SITEWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
                "SITEWATCH_TOPIC_PREFIX": names.prefix,
                "SITEWATCH_PARTITIONS": str(args.partitions),
                "SITEWATCH_STATE_DIR": str(work / "state"),
                "SITEWATCH_DATABASE_URL": url,
                "SITEWATCH_VERIFIERS": "",
                "SITEWATCH_LOG_FORMAT": "json",
            }
            wait = args.fetch_wait_ms
            procs.append(spawn(["worker"], env, work / "worker.log", wait))
            procs.append(
                spawn(["sink", "--session-timeout-ms", "2000"], env, work / "sink.log", wait)
            )
            watcher = Watcher(db)
            watcher.start()

            # warm up: the first row proves the whole path is live
            warm = sample_ids.pop()
            started = time.monotonic()
            while warm not in watcher.seen:
                await producer.send_and_wait(
                    names.check_results, result(warm, False), key=records.site_key(warm)
                )
                await wait_row(watcher, warm, 2.0)
                if time.monotonic() - started > 120:
                    raise SystemExit(f"pipeline not live after 120 s; logs in {work}")
            print(f"pipeline live after {time.monotonic() - started:.1f} s", flush=True)

            sent = 0
            stop_load = asyncio.Event()

            async def background() -> None:
                """Paced by the clock: every 10 ms, send what is due since the start."""
                nonlocal sent
                t0 = time.perf_counter()
                while not stop_load.is_set():
                    due = args.rate * (time.perf_counter() - t0)
                    while sent < due:
                        sid = 1 + (sent % args.sites)
                        await producer.send(
                            names.check_results, result(sid, True), key=records.site_key(sid)
                        )
                        sent += 1
                    await asyncio.sleep(0.01)

            published: dict[int, float] = {}
            on_topic: dict[int, float] = {}
            observer = asyncio.create_task(
                observe_events(broker.bootstrap, names.site_events, on_topic)
            )
            load = asyncio.create_task(background())
            load_started = time.perf_counter()
            await asyncio.sleep(args.warmup)
            for sid in sample_ids:
                if time.perf_counter() - load_started > args.duration:
                    break
                value = result(sid, False)
                published[sid] = time.time()
                await producer.send(names.check_results, value, key=records.site_key(sid))
                await asyncio.sleep(args.every)
            stop_load.set()
            await load
            load_s = time.perf_counter() - load_started
            await producer.flush()
            print(
                f"background: {sent} results in {load_s:.1f} s = {sent / load_s:,.0f}/s "
                f"(target {args.rate:,}/s)",
                flush=True,
            )
            drain = time.monotonic() + 60
            for sid in published:  # the last samples may still be on their way
                await wait_row(watcher, sid, max(0.0, drain - time.monotonic()))
            watcher.stop.set()
            observer.cancel()
            await asyncio.gather(observer, return_exceptions=True)
            await producer.stop()

            lat = sorted(
                (watcher.seen[s] - t) * 1000 for s, t in published.items() if s in watcher.seen
            )
            missing = len(published) - len(lat)
            if not lat:
                raise SystemExit(f"no sample arrived; logs in {work}")

            def pct(p: float, values: list[float] = lat) -> float:
                return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]

            both = [s for s in published if s in watcher.seen and s in on_topic]
            hop1 = sorted((on_topic[s] - published[s]) * 1000 for s in both)
            hop2 = sorted((watcher.seen[s] - on_topic[s]) * 1000 for s in both)

            print(f"samples: {len(lat)} (missing {missing}), one every {args.every}s")
            print(
                f"P5 latency, first failing result -> committed MySQL row: "
                f"p50 {pct(50):.0f} ms, p90 {pct(90):.0f} ms, p99 {pct(99):.0f} ms, "
                f"max {lat[-1]:.0f} ms, mean {statistics.fmean(lat):.0f} ms "
                f"(target p99 <= 500 ms: {'met' if pct(99) <= 500 else 'NOT met'})"
            )
            if both:
                print(
                    f"  of which publish -> transition on site-events (worker): "
                    f"p50 {pct(50, hop1):.0f} ms, p99 {pct(99, hop1):.0f} ms; "
                    f"site-events -> committed row (sink): "
                    f"p50 {pct(50, hop2):.0f} ms, p99 {pct(99, hop2):.0f} ms"
                )
        finally:
            for proc in procs:
                stop(proc)
            admin(f"DROP DATABASE IF EXISTS {db}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="background load, s")
    parser.add_argument("--rate", type=int, default=3333, help="background results/s")
    parser.add_argument("--sites", type=int, default=20_000, help="background sites")
    parser.add_argument("--every", type=float, default=0.25, help="one sample every N s")
    parser.add_argument("--warmup", type=float, default=5.0, help="load before sampling, s")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--broker", choices=["tansu", "kafka", "both"], default="both")
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=None,
        help="experiment: force fetch_max_wait_ms of the worker's and sink's consumers",
    )
    args = parser.parse_args()
    for kind in ["tansu", "kafka"] if args.broker == "both" else [args.broker]:
        args.broker = kind
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
