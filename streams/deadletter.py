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
