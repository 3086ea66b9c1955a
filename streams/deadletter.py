"""Poison records go to `<topic>.dead-letter` with the error; consumers keep going."""

from __future__ import annotations

import base64
from typing import Protocol

import structlog

from . import records, timefmt

log = structlog.get_logger(__name__)


class _Sender(Protocol):
    async def send_and_wait(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ...
    ) -> object: ...


class ConsumedRecord(Protocol):
    """Any consumed message: aiokafka's ConsumerRecord, Faust's Message, ours."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def dead_letter_for(
    msg: ConsumedRecord, error: str, consumer: str, now_ms: int
) -> records.DeadLetter:
    """The dead letter of a consumed message."""
    return make_dead_letter(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        error=error,
        consumer=consumer,
        now_ms=now_ms,
    )


def make_dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: str,
    consumer: str,
    now_ms: int,
) -> records.DeadLetter:
    """Wrap an unusable message; the value is kept verbatim (base64 if not UTF-8)."""
    encoding = "utf-8"
    text: str | None = None
    if value is not None:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(value).decode("ascii"), "base64"
    return records.DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        value=text,
        value_encoding=encoding,  # type: ignore[arg-type]
        error=error[:2000],
        consumer=consumer,
        at=timefmt.from_ms(now_ms),
    )


async def send_dead_letter(
    producer: _Sender,
    letter: records.DeadLetter,
    key: bytes | None,
) -> None:
    """Publish to `<topic>.dead-letter`, keeping the original key (so, its partition)."""
    log_dead_letter(letter)
    await producer.send_and_wait(f"{letter.topic}.dead-letter", records.encode(letter), key)


def log_dead_letter(letter: records.DeadLetter) -> None:
    log.warning(
        "dead-lettered record",
        topic=letter.topic,
        partition=letter.partition,
        offset=letter.offset,
        error=letter.error,
        consumer=letter.consumer,
    )
