"""P7: worker memory per tracked site, at 100,000 and 1,000,000 sites (Apache Kafka).

Run: .venv/bin/python bench/p7_memory.py [--sites 100000,1000000]

For each size N, on one Apache Kafka node started here: `sitewatch worker` takes the
settings of N sites and one result each (so every site has a state row and settings), and
its resident memory (VmRSS) is read once it has committed them all and is idle. The
per-site figure is (RSS with N sites - RSS of a worker that tracks none) / N, measured in
the same run. Baseline in the same run: the bytes of state and settings the worker holds
per site (the encoded rows), the floor of any store.
Target: <= 500 bytes per site.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workerbench import BASE, PARTITIONS, committed, say, spawn_worker, stop_worker

from scripts.apache_kafka import KafkaNode
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def load_sites(bootstrap: str, names: TopicNames, n: int) -> int:
    """Settings and one healthy result per site; returns the bytes of the settings."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    size = 0
    try:
        for start in range(1, n + 1, 50_000):
            futs = []
            for s in range(start, min(n, start + 49_999) + 1):
                site = records.encode(records.SiteRecord(site_id=s, url=f"http://s{s}.test/"))
                size += len(site)
                res = records.CheckResult(
                    result_id=f"r{s}",
                    site_id=s,
                    check_type=CheckType.HTTP,
                    ok=True,
                    observed_at=timefmt.from_ms(BASE + s),
                    probe="bench",
                )
                key = records.site_key(s)
                futs.append(await producer.send(names.sites, site, key=key))
                futs.append(await producer.send(names.check_results, records.encode(res), key=key))
            await asyncio.gather(*futs)
            say(f"  loaded {min(n, start + 49_999):,}/{n:,} sites")
    finally:
        await producer.stop()
    return size


async def worker_rss(bootstrap: str, prefix: str, state: Path, n: int, log: Path) -> int:
    """RSS of a worker once it has committed `n` results and settled."""
    env = {
        **os.environ,
        "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_PARTITIONS": str(PARTITIONS),
        "SITEWATCH_STATE_DIR": str(state),
        "SITEWATCH_LOG_LEVEL": "WARNING",
    }
    proc = spawn_worker(env, log)
    try:
        names = TopicNames(prefix)
        deadline = time.monotonic() + 3600
        while True:
            await asyncio.sleep(2)
            if proc.poll() is not None:
                raise SystemExit(f"worker exited: see {log}")
            done = await committed(bootstrap, f"{prefix}worker", names.check_results)
            if n and done:
                say(f"  worker committed {done:,}/{n:,}")
            if done >= n and (n or time.monotonic() > deadline - 3600 + 20):
                break
            if time.monotonic() > deadline:
                raise SystemExit("worker did not finish in an hour")
        await asyncio.sleep(10)  # idle: batches done, caches as they stay
        return rss_bytes(proc.pid)
    finally:
        stop_worker(proc)


def state_bytes(state: Path) -> int:
    """Bytes of the worker's rows (keys and values) in its local tables."""
    from rocksdict import AccessType, Options, Rdict

    total = 0
    for path in (state / "worker").glob("v*/tables/*-[0-9]*.db"):
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in db.items():  # raw mode: both are bytes
                total += len(cast(bytes, key)) + len(cast(bytes, value))
        finally:
            db.close()
    return total


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", default="100000,1000000")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sites.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="p7-"))
    rows = []
    try:
        with KafkaNode(data_dir=tmp / "kafka") as kafka:
            bootstrap = kafka.bootstrap
            empty = TopicNames("p7.empty.")
            await ensure_topics(bootstrap, empty, PARTITIONS)
            say("a worker tracking no site")
            rss0 = await worker_rss(bootstrap, empty.prefix, tmp / "s0", 0, tmp / "w0.log")
            for n in sizes:
                names = TopicNames(f"p7.n{n}.")
                await ensure_topics(bootstrap, names, PARTITIONS)
                say(f"{n:,} sites")
                await load_sites(bootstrap, names, n)
                state = tmp / f"s{n}"
                rss = await worker_rss(bootstrap, names.prefix, state, n, tmp / f"w{n}.log")
                rows.append((n, rss, state_bytes(state)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"worker RSS tracking no site: {rss0 / 2**20:8.1f} MiB")
    for n, rss, held in rows:
        per_site = (rss - rss0) / n
        print(
            f"{n:>9,} sites: RSS {rss / 2**20:8.1f} MiB, {per_site:6.0f} bytes/site "
            f"(target <= 500); rows held {held / n:5.0f} bytes/site (baseline)"
        )


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    asyncio.run(main())
