"""The wall clock of the shells, in epoch milliseconds (the pure core reads no clock: its
time is its inputs')."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
