"""The back-off policy of every retry loop (database and broker), built on tenacity.

Waits double from `first_s` up to `max_s`, for as long as it takes: a monitor outlives
an outage of its database or broker. A stop (the process shutting down) cuts a wait
short and ends the retrying with the last error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential


def backoff(
    *,
    first_s: float,
    max_s: float,
    retry_if: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, float], None],
    stop: asyncio.Event | None = None,
) -> AsyncRetrying:
    """`async for attempt in backoff(...): with attempt: ...`: retries what `retry_if`
    accepts, calling `on_retry(error, seconds)` before each wait; raises the rest."""

    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    def retryable(exc: BaseException) -> bool:
        return not (stop is not None and stop.is_set()) and retry_if(exc)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None:
            on_retry(exc, state.upcoming_sleep)

    return AsyncRetrying(
        sleep=sleep,
        wait=wait_exponential(multiplier=first_s, min=first_s, max=max_s),
        retry=retry_if_exception(retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
