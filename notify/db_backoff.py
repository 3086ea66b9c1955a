"""How both notifier loops wait out a database error (docs/notify.md, database errors).

Waits double from 0.5 s to 30 s while the error is one that waiting can fix; a FATAL
one (the schema missing, no privileges) is raised at once and stops the notifier.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from tenacity import AsyncRetrying

from sitewatch.retry import backoff
from sitewatch.sink import dberrors
from sitewatch.sink.dberrors import DbFailure

log = structlog.get_logger(__name__)

#: back-off after a database error: doubling from the first to the last
DB_BACKOFF_S: Final = (0.5, 30.0)


def waitable(exc: BaseException) -> bool:
    return dberrors.classify(exc) is not DbFailure.FATAL


def log_wait(what: str, exc: BaseException, seconds: float) -> None:
    log.warning(
        "database error, backing off",
        what=what,
        kind=dberrors.classify(exc).value,
        seconds=seconds,
        error=dberrors.describe(exc)[:300],
    )


def db_backoff(what: str, stop: asyncio.Event) -> AsyncRetrying:
    """`async for attempt in db_backoff(...): with attempt: ...` for the work `what`;
    a stop cuts the wait short and ends the retrying with the last error."""
    return backoff(
        first_s=DB_BACKOFF_S[0],
        max_s=DB_BACKOFF_S[1],
        retry_if=waitable,
        on_retry=lambda exc, seconds: log_wait(what, exc, seconds),
        stop=stop,
    )
