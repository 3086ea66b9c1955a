"""What the processor gives back: a batch's records to publish (`Output`), and its
running totals (`Stats`, logged by the worker and exported as metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from . import records


class Keyed(NamedTuple):
    key: bytes
    value: bytes


@dataclass
class Output:
    transitions: list[Keyed] = field(default_factory=list)
    verify_requests: list[Keyed] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, records.DeadLetter]] = field(default_factory=list)
    applied: int = 0


@dataclass
class Stats:
    """Totals since start, in the order the worker logs them."""

    inputs: int = 0
    ticks: int = 0
    transitions: int = 0
    verify_requests: int = 0
    dead_letters: int = 0
    redelivered: int = 0
    sites: int = 0
    parked: int = 0
    dropped_parked: int = 0
    purged: int = 0
