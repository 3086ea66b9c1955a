"""What the worker benchmarks (P1, P7, P8) share: the loader, the group's committed count,
and `sitewatch worker` started and stopped as a process group."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sitewatch.streams import timefmt

PARTITIONS = 8
BASE = timefmt.to_ms("2026-11-26T00:00:00.000Z")
SITEWATCH = str(Path(sys.executable).with_name("sitewatch"))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def load(
    bootstrap: str, topic: str, rows: list[tuple[bytes, bytes]], progress: bool = False
) -> None:
    """Produce keyed rows in chunks of 50,000 (each chunk confirmed before the next)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 << 10)
    await producer.start()
    try:
        for start in range(0, len(rows), 50_000):
            chunk = rows[start : start + 50_000]
            await asyncio.gather(*[await producer.send(topic, value=v, key=k) for k, v in chunk])
            if progress:
                say(f"  loaded {start + len(chunk):,}/{len(rows):,} into {topic}")
    finally:
        await producer.stop()


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offsets over the topic's partitions, summed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum([await consumer.committed(tp) or 0 for tp in tps])
    finally:
        await consumer.stop()


def spawn_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [SITEWATCH, "worker"], env=env, stdout=out, stderr=out, start_new_session=True
        )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its process group, SIGKILL after 60 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
