"""The one back-off policy: what it retries, how long it waits, and that a stop ends it."""

from __future__ import annotations

import asyncio

import pytest

from sitewatch.retry import backoff


async def test_backoff_retries_what_it_is_told_and_doubles_its_waits() -> None:
    waits: list[float] = []
    calls = 0
    async for attempt in backoff(
        first_s=0.001,
        max_s=0.004,
        retry_if=lambda e: isinstance(e, ConnectionError),
        on_retry=lambda e, s: waits.append(s),
    ):
        with attempt:
            calls += 1
            if calls < 5:
                raise ConnectionError("away")
    assert calls == 5
    assert waits == [0.001, 0.002, 0.004, 0.004]


async def test_backoff_raises_what_it_must_not_retry_at_once() -> None:
    calls = 0
    with pytest.raises(ValueError, match="bad"):
        async for attempt in backoff(
            first_s=0.001,
            max_s=0.01,
            retry_if=lambda e: isinstance(e, ConnectionError),
            on_retry=lambda e, s: None,
        ):
            with attempt:
                calls += 1
                raise ValueError("bad")
    assert calls == 1


async def test_backoff_stop_cuts_the_wait_short_and_ends_with_the_last_error() -> None:
    stop = asyncio.Event()
    calls = 0

    def on_retry(exc: BaseException, seconds: float) -> None:
        asyncio.get_running_loop().call_later(0.01, stop.set)

    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionError):
        async for attempt in backoff(
            first_s=30, max_s=60, retry_if=lambda e: True, on_retry=on_retry, stop=stop
        ):
            with attempt:
                calls += 1
                raise ConnectionError("away")
    assert calls == 2  # the stop woke the wait; the next failure is not retried
    assert asyncio.get_running_loop().time() - started < 5
