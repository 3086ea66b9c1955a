"""The one message type: a Kafka record as every consumer of the project sees it.

`ConsumedRecord` is what the code reads of a record (aiokafka's ConsumerRecord and
Faust's Message have these attributes too); `Record` is the one the project builds itself
(replay's reader, records held back by the worker, tests and benchmarks).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class ConsumedRecord(Protocol):
    """Any consumed message: aiokafka's ConsumerRecord, Faust's Message, `Record`."""

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


class Record(NamedTuple):
    """A record the project builds itself; `timestamp` (ms) where the reader knows it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0
