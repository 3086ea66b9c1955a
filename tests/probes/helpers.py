"""Run `sitewatch probe|verifier` as real processes and read what they publish."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sitewatch.streams import records
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames

SITEWATCH = str(Path(sys.executable).with_name("sitewatch"))
PARTITIONS = 4


def env_for(bootstrap: str, prefix: str, ca: Path, state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_PARTITIONS": str(PARTITIONS),
        "SITEWATCH_PROBE_ALLOW_PRIVATE": "1",
        "SITEWATCH_PROBE_EXTRA_CA": str(ca),
        "SITEWATCH_STATE_DIR": str(state),
        "SITEWATCH_LOG_FORMAT": "json",
    }


async def start(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    out = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            SITEWATCH, *args, env=env, stdout=out, stderr=out
        )
    finally:
        out.close()


async def stop(proc: asyncio.subprocess.Process, timeout_s: float = 15) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


async def create_topics(bootstrap: str, prefix: str) -> TopicNames:
    names = TopicNames(prefix)
    await ensure_topics([bootstrap], names, PARTITIONS)
    return names


async def publish(
    bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


class Reader:
    """Reads a topic from the beginning (no group) and keeps every record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.values: list[bytes] = []

    async def __aenter__(self) -> Reader:
        await self.consumer.start()
        parts = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(parts)
        await self.consumer.seek_to_beginning(*parts)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=200)
        for msgs in batches.values():
            self.values.extend(m.value for m in msgs if m.value is not None)

    async def wait_for(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
            await self.poll()

    def results(self) -> list[records.CheckResult]:
        out = []
        for value in self.values:
            decoded = records.input_decoder.decode(value)
            if isinstance(decoded, records.CheckResult):
                out.append(decoded)
        return out
