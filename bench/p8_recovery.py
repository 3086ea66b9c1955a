"""P8: worker restart with many tracked sites, on Apache Kafka: local store and fresh node.

Run: .venv/bin/python bench/p8_recovery.py [--sites N]   (default 100,000)

One Apache Kafka node is started here (scripts/apache_kafka.py). The worker first builds
state for N sites (settings plus one failing result each, so every site has a state row),
is stopped, then restarted twice:
- local: on the same state dir (RocksDB is current; Faust only checks the changelog);
- fresh node: on an empty state dir, so both tables are rebuilt from their changelogs.
Each restart is timed from the process start to the moment a marker result sent right
after the start has come out as a transition (so "ready" means processing again).
Baseline in the same run: a bare aiokafka consumer reading both changelog topics from the
beginning to their end, the floor of any changelog recovery here.
Target: <= 60 s local (at 1,000,000 sites); the fresh-node time is reported.
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

from aiokafka import AIOKafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workerbench import (
    BASE,
    PARTITIONS,
    committed,
    load,
    say,
    spawn_worker,
    stop_worker,
)

from scripts.apache_kafka import KafkaNode
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.kafka_admin import ensure_topics, partitions_of
from sitewatch.streams.topics import TopicNames


def result(site_id: int, ok: bool, at_ms: int, rid: str) -> tuple[bytes, bytes]:
    rec = records.CheckResult(
        result_id=rid,
        site_id=site_id,
        check_type=CheckType.HTTP,
        ok=ok,
        observed_at=timefmt.from_ms(at_ms),
        probe="bench",
    )
    return records.site_key(site_id), records.encode(rec)


async def build(
    bootstrap: str, names: TopicNames, sites: int, env: dict[str, str], log: Path
) -> float:
    site_rows = [
        (
            records.site_key(s),
            records.encode(records.SiteRecord(site_id=s, url=f"http://s{s}.test/")),
        )
        for s in range(1, sites + 1)
    ]
    await load(bootstrap, names.sites, site_rows, progress=True)
    await load(
        bootstrap,
        names.check_results,
        [result(s, False, BASE, f"f{s}") for s in range(1, sites + 1)],
        progress=True,
    )
    proc = spawn_worker(env, log)
    started = time.monotonic()
    try:
        last = -1
        while True:
            await asyncio.sleep(2)
            done = await committed(bootstrap, f"{names.prefix}worker", names.check_results)
            if done != last:
                say(f"  worker committed {done:,}/{sites:,}")
                last = done
            if done >= sites:
                return time.monotonic() - started
            if proc.poll() is not None:
                raise SystemExit(f"worker exited: see {log}")
    finally:
        stop_worker(proc)


async def restart(
    bootstrap: str, names: TopicNames, env: dict[str, str], log: Path, marker_site: int
) -> float:
    """Seconds from the worker's start to the marker's transition on site-events."""
    topic = names.site_events
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    proc = spawn_worker(env, log)
    started = time.monotonic()
    try:
        # a success for a site that is seems_down: `probe_cleared` once the worker is back
        await load(
            bootstrap,
            names.check_results,
            [result(marker_site, True, BASE + 60_000, f"m{marker_site}")],
            progress=True,
        )
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    if (
                        m.value
                        and records.transition_decoder.decode(m.value).site_id == marker_site
                    ):
                        return time.monotonic() - started
            if proc.poll() is not None:
                raise SystemExit(f"worker exited: see {log}")
            if time.monotonic() - started > 1800:
                raise SystemExit("worker did not come back in 30 min")
    finally:
        await consumer.stop()
        stop_worker(proc)


async def read_changelogs(bootstrap: str, topics: list[str]) -> tuple[int, float]:
    """Records in the changelog topics and the seconds a bare consumer takes to read them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await partitions_of(bootstrap, t)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        started = time.monotonic()
        await consumer.seek_to_beginning(*tps)
        n = 0
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for tp, msgs in batch.items():
                n += len(msgs)
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return n, time.monotonic() - started
    finally:
        await consumer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=100_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="p8-"))
    try:
        with KafkaNode(data_dir=tmp / "kafka") as kafka:
            bootstrap = kafka.bootstrap
            names = TopicNames("bench.")
            await ensure_topics(bootstrap, names, PARTITIONS)
            env = {
                **os.environ,
                "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
                "SITEWATCH_TOPIC_PREFIX": names.prefix,
                "SITEWATCH_PARTITIONS": str(PARTITIONS),
                "SITEWATCH_STATE_DIR": str(tmp / "state"),
                "SITEWATCH_LOG_LEVEL": "WARNING",
            }
            say(f"building state for {args.sites:,} sites")
            built = await build(bootstrap, names, args.sites, env, tmp / "worker.log")
            say("restart on the local store")
            local = await restart(bootstrap, names, env, tmp / "worker.log", 1)
            say("restart on an empty state dir (fresh node)")
            fresh_env = {**env, "SITEWATCH_STATE_DIR": str(tmp / "fresh")}
            fresh = await restart(bootstrap, names, fresh_env, tmp / "worker.log", 2)
            changelogs = [
                f"{names.prefix}worker-site-state-changelog",
                f"{names.prefix}worker-site-settings-changelog",
            ]
            n, floor = await read_changelogs(bootstrap, changelogs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"sites tracked:                           {args.sites:10,}")
    print(f"build (first pass over {args.sites:,} results):   {built:10.1f} s")
    print(f"baseline: aiokafka reads both changelogs  {floor:10.1f} s  ({n:,} records)")
    print(f"P8 local restart to processing:          {local:10.1f} s  (target <= 60 s at 1M)")
    print(f"P8 fresh node (changelog) to processing: {fresh:10.1f} s")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    asyncio.run(main())
