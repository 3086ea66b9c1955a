"""A check's timings: seconds measured, milliseconds on the wire."""

from __future__ import annotations

import time

from sitewatch.streams.records import Timings

from ..http1 import Stopwatch


def ms(seconds: float | None) -> float | None:
    """Seconds -> milliseconds, to the microsecond."""
    # round() to the microsecond, then scale: round(x, 3) is several times slower
    return None if seconds is None else round(seconds * 1_000_000) / 1000


def since_ms(start: float) -> float:
    """Milliseconds from `start` (a `time.perf_counter()` reading) to now."""
    return round((time.perf_counter() - start) * 1_000_000) / 1000


def of_stopwatch(clock: Stopwatch) -> Timings:
    """An http check's timings, `total` up to now."""
    return Timings(
        dns=ms(clock.dns),
        tcp=ms(clock.tcp),
        tls=ms(clock.tls),
        ttfb=ms(clock.ttfb),
        total=since_ms(clock.start),
    )
