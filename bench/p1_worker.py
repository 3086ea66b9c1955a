"""P1: worker results/s through a real broker, beside the raw aiokafka ceiling.

Run: .venv/bin/python bench/p1_worker.py [--broker tansu|kafka|both] [--results N]
     [--sites N] [--failing F] [--scenario steady|cold|both] [--profile FILE]

Figures measured in this run, on each broker started here (the bundled Tansu broker and
an Apache Kafka node from scripts/apache_kafka.py):
- ceiling: a bare aiokafka loop over the same results (consume -> JSON decode -> produce
  one record each -> commit per batch), the most a Kafka shell can do here;
- steady: `sitewatch worker` (the real CLI: Faust, tables, changelog) already holding the
  settings of every site, over results in time order, timed by the group's committed
  offsets from its first committed result to its last;
- cold: a backlog where results overtake settings: both topics are loaded before the
  worker starts, timed from the worker's start to its last committed result.
Targets: steady >= 20,000 results/s and >= 50 % of the ceiling.
`--profile FILE` writes 10 s of py-spy samples of the steady worker (speedscope).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workerbench import BASE, PARTITIONS, committed, load, say

from scripts.apache_kafka import KafkaNode
from sitewatch.devbroker import Broker
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames

RESULTS = Path(__file__).resolve().parent / "results"


def make_results(n: int, sites: int, failing_share: float) -> list[tuple[bytes, bytes]]:
    """Results in time order; about `failing_share` of them fail (outages come and go)."""
    rng = random.Random(3)
    recover = 0.2
    # a site starts failing with `down` so that down/(down+recover) = the failing share
    down = recover * failing_share / (1 - failing_share)
    failing: set[int] = set()
    rows = []
    for i in range(n):
        site = rng.randint(1, sites)
        if rng.random() < (recover if site in failing else down):
            failing.symmetric_difference_update({site})
        rec = records.CheckResult(
            result_id=f"r{i}",
            site_id=site,
            check_type=CheckType.HTTP,
            ok=site not in failing,
            probe="bench",
            observed_at=timefmt.from_ms(BASE + i),
        )
        rows.append((records.site_key(site), records.encode(rec)))
    return rows


def make_sites(n: int) -> list[tuple[bytes, bytes]]:
    return [
        (
            records.site_key(s),
            records.encode(records.SiteRecord(site_id=s, url=f"http://s{s}.test/")),
        )
        for s in range(1, n + 1)
    ]


async def ceiling(bootstrap: str, source: str, sink: str, n: int) -> float:
    """consume -> JSON decode -> produce one record each -> commit per batch."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="bench.ceiling",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 << 10)
    await consumer.start()
    await producer.start()
    consumer.subscribe([source])
    decode = records.decode_input
    done = 0
    start = None
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=4000)
            if not batch:
                continue
            start = start or time.perf_counter()
            futures = []
            for msgs in batch.values():
                for m in msgs:
                    decode(m.value)
                    futures.append(await producer.send(sink, value=m.value, key=m.key))
            await asyncio.gather(*futures)
            await consumer.commit()
            done += len(futures)
        assert start is not None
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()


class Worker:
    """`sitewatch worker` as a process; its log is kept under bench/results/."""

    def __init__(self, bootstrap: str, prefix: str, state: Path, label: str) -> None:
        self.bootstrap = bootstrap
        self.names = TopicNames(prefix)
        self.group = f"{prefix}worker"
        env = {
            **os.environ,
            "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
            "SITEWATCH_TOPIC_PREFIX": prefix,
            "SITEWATCH_STATE_DIR": str(state),
            "SITEWATCH_PARTITIONS": str(PARTITIONS),
            "SITEWATCH_LOG_LEVEL": "WARNING",
        }
        RESULTS.mkdir(exist_ok=True)
        with open(RESULTS / f"p1-worker-{label}.log", "wb") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("sitewatch")), "worker"],
                env=env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    async def wait_committed(
        self, topic: str, n: int, limit_s: float = 1200
    ) -> tuple[float, float]:
        """(monotonic time of the first commit seen, of the one reaching n)."""
        first = None
        deadline = time.monotonic() + limit_s
        last = -1
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            done = await committed(self.bootstrap, self.group, topic)
            now = time.monotonic()
            if done and first is None:
                first = now
            if done != last and done:
                say(f"  worker committed {done:,}/{n:,} of {topic}")
                last = done
            if done >= n:
                assert first is not None
                return first, now
            if self.proc.poll() is not None:
                raise SystemExit("the worker exited: see bench/results/")
        raise SystemExit(f"worker did not finish in {limit_s:.0f} s")

    def profile(self, path: str) -> None:
        spy = ["py-spy", "record", "--pid", str(self.proc.pid), "-d", "10", "-f", "speedscope"]
        subprocess.Popen([*spy, "-o", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


async def steady(
    bootstrap: str, tmp: Path, sites: list[Any], rows: list[Any], label: str, profile: str | None
) -> float:
    prefix = f"steady{label}."
    names = TopicNames(prefix)
    await ensure_topics(bootstrap, names, PARTITIONS)
    worker = Worker(bootstrap, prefix, tmp / f"state-{prefix}", f"steady-{label}")
    try:
        await load(bootstrap, names.sites, sites)
        await worker.wait_committed(names.sites, len(sites))  # it holds every site's settings
        say(f"  loading {len(rows):,} results")
        load_task = asyncio.create_task(load(bootstrap, names.check_results, rows))
        if profile:
            await worker.wait_committed(names.check_results, 1)
            worker.profile(profile)
        first, last = await worker.wait_committed(names.check_results, len(rows))
        await load_task
        # from the first commit on: the results before it were being loaded meanwhile
        done_at_first = min(len(rows), BATCH_GUESS)
        return (len(rows) - done_at_first) / (last - first)
    finally:
        worker.stop()


#: what the first commit already holds (the worker's first batch): left out of the rate
BATCH_GUESS = 4000


async def cold(bootstrap: str, tmp: Path, sites: list[Any], rows: list[Any], label: str) -> float:
    prefix = f"cold{label}."
    names = TopicNames(prefix)
    await ensure_topics(bootstrap, names, PARTITIONS)
    # results first: many overtake their site's settings and wait parked
    await load(bootstrap, names.check_results, rows)
    await load(bootstrap, names.sites, sites)
    started = time.monotonic()
    worker = Worker(bootstrap, prefix, tmp / f"state-{prefix}", f"cold-{label}")
    try:
        _, last = await worker.wait_committed(names.check_results, len(rows))
        return len(rows) / (last - started)
    finally:
        worker.stop()


def start_broker(kind: str, tmp: Path) -> AbstractContextManager[Any]:
    if kind == "kafka":
        return KafkaNode(data_dir=tmp / "kafka")
    return Broker(log_path=tmp / "tansu.log")


async def measure(kind: str, args: argparse.Namespace) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix=f"p1-{kind}-"))
    out: dict[str, float] = {}
    try:
        with start_broker(kind, tmp) as broker:
            bootstrap = broker.bootstrap
            rows = make_results(args.results, args.sites, args.failing)
            sites = make_sites(args.sites)
            raw = TopicNames("raw.")
            await ensure_topics(bootstrap, raw, PARTITIONS, extra=["raw.out"])
            await load(bootstrap, raw.check_results, rows)
            say(f"[{kind}] the aiokafka ceiling")
            out["ceiling"] = await ceiling(bootstrap, raw.check_results, "raw.out", len(rows))
            if args.scenario in ("steady", "both"):
                say(f"[{kind}] steady state")
                out["steady"] = await steady(bootstrap, tmp, sites, rows, kind, args.profile)
            if args.scenario in ("cold", "both"):
                say(f"[{kind}] cold backlog")
                out["cold"] = await cold(bootstrap, tmp, sites, rows, kind)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", choices=["tansu", "kafka", "both"], default="both")
    parser.add_argument("--results", type=int, default=300_000)
    parser.add_argument("--sites", type=int, default=20_000)
    parser.add_argument("--failing", type=float, default=0.02, help="share of failing results")
    parser.add_argument("--scenario", choices=["steady", "cold", "both"], default="both")
    parser.add_argument("--profile", help="py-spy profile of the steady worker (speedscope)")
    args = parser.parse_args()
    kinds = ["tansu", "kafka"] if args.broker == "both" else [args.broker]
    for kind in kinds:
        fig = await measure(kind, args)
        what = f"{args.results:,} results over {args.sites:,} sites, {args.failing:.0%} failing"
        print(f"[{kind}] {what}")
        top = fig["ceiling"]
        print(f"[{kind}]   ceiling (aiokafka consume->decode->produce->commit): {top:9,.0f}/s")
        for name in ("steady", "cold"):
            if name in fig:
                ratio = fig[name] / top
                target = "  (target >= 20,000 and >= 50 %)" if name == "steady" else ""
                rate = f"{fig[name]:9,.0f} results/s = {ratio:4.0%} of the ceiling"
                print(f"[{kind}]   P1 worker, {name:6}: {rate}{target}")


if __name__ == "__main__":
    # a SIGTERM (e.g. from `timeout`) still runs the cleanup of the broker and worker
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    asyncio.run(main())
