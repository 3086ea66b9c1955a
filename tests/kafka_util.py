"""Test helpers around the real broker: produce records, read a topic, run processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sitewatch.streams.kafka_admin import partitions_of


class RunningBroker(Protocol):
    """What tests need of a broker fixture (Apache Kafka or Tansu): where it listens."""

    @property
    def bootstrap(self) -> str: ...


SITEWATCH = str(Path(sys.executable).with_name("sitewatch"))


async def produce(
    bootstrap: str,
    topic: str,
    rows: Iterable[tuple[bytes | None, bytes | None]],
    partition: int | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, partition=partition) for k, v in rows]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str,
    topic: str,
    idle_s: float = 1.0,
    timeout_s: float = 60.0,
    want: int | None = None,
) -> list[tuple[bytes | None, bytes | None, int, int]]:
    """Every record of `topic` from the start: (key, value, partition, offset)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[tuple[bytes | None, bytes | None, int, int]] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts = await partitions_of(bootstrap, topic, wait_s=timeout_s)
        if not parts:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            got = sum(len(v) for v in batch.values())
            for tp, msgs in batch.items():
                out.extend((m.key, m.value, tp.partition, m.offset) for m in msgs)
            if got:
                last = time.monotonic()
                continue
            enough = want is None or len(out) >= want
            if enough and time.monotonic() - last > idle_s:
                break
        return out
    finally:
        await consumer.stop()


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # unbuffered: a SIGKILLed process keeps every log line it wrote
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [SITEWATCH, *args],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode
