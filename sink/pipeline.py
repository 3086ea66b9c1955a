"""Fold the next batch while the previous one is being written (P4, issue 16).

Profiled, the sink's time was about half the Python of decoding, folding and escaping
rows and half waiting for MariaDB, one after the other. Here batch N+1 is decoded,
read (on a second connection) and folded while batch N's transaction is still being
written and committed on the first, so the two halves overlap.

Correctness rests on the sink being the only writer: what N will have changed is known
before it commits (`Prepared.overlay`), and N+1's fold lays it over what its reads
return, whether or not they already see N. Each batch is still one transaction with
its offsets, written in order. If N fails in any way, the N+1 folded on top of it is
discarded, N goes down the sequential path (retried, or split around a refused record,
as before), and N+1 is folded again from the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from sitewatch import metrics
from sitewatch.clock import now_ms
from sitewatch.streams.message import ConsumedRecord

from . import dberrors
from .batch import BatchApplier, BatchResult, Prepared
from .gate import WriteGate
from .shadow import ShadowOverlay

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _InFlight:
    messages: Sequence[ConsumedRecord]
    prepared: Prepared
    task: asyncio.Task[BatchResult]
    started: float  # when it was submitted (perf_counter): the batch duration metric


class Pipeline:
    """Submit batches in log order; `flush()` before relying on them being written."""

    def __init__(
        self,
        gate: WriteGate,
        applier: BatchApplier,
        *,
        sequential: Callable[[Sequence[ConsumedRecord]], Awaitable[BatchResult]],
        publish: Callable[[BatchResult], Awaitable[None]],
        done: Callable[[BatchResult], None] = lambda _: None,
    ) -> None:
        self.gate = gate
        self.applier = applier
        self._sequential = sequential  # the one-transaction path with retries and splits
        self._publish = publish  # dead letters, before the commit
        self._done = done  # each pipelined batch's result (the sequential path counts its own)
        self._inflight: _InFlight | None = None

    async def submit(self, messages: Sequence[ConsumedRecord]) -> None:
        """Fold `messages` now, write them once the batch before has committed."""
        started = time.perf_counter()
        base = self._inflight.prepared.overlay if self._inflight is not None else None
        prepared: Prepared | None
        try:
            prepared = await self._prepare(messages, base)
        except Exception as exc:
            # a failed read: the sequential path retries it (or stops) after the batch
            # before is settled
            log.warning("folding ahead failed", error=dberrors.describe(exc)[:300])
            prepared = None
        clean = await self.flush()
        if prepared is None or not clean:
            await self._sequential(messages)
            self._observe(len(messages), started)
            return
        task = asyncio.create_task(self._write(prepared))
        self._inflight = _InFlight(messages, prepared, task, started)

    async def flush(self) -> bool:
        """Wait for the batch being written; False if it had to go the sequential way."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return True
        try:
            result = await inflight.task
        except Exception as exc:
            log.warning(
                "pipelined batch failed, applying it on its own",
                error=dberrors.describe(exc)[:300],
                messages=len(inflight.messages),
            )
            await self._sequential(inflight.messages)
            self._observe(len(inflight.messages), inflight.started)
            return False
        self._done(result)
        self._observe(len(inflight.messages), inflight.started)
        return True

    @staticmethod
    def _observe(size: int, started: float) -> None:
        metrics.observe_batch(metrics.SINK_BATCH_RECORDS, metrics.SINK_BATCH_SECONDS, size, started)

    async def _prepare(
        self, messages: Sequence[ConsumedRecord], base: ShadowOverlay | None
    ) -> Prepared:
        async with self.gate.transaction(dirty_reads=True) as tx:  # reads only
            return await self.applier.prepare(tx, messages, now_ms(), base)

    async def _write(self, prepared: Prepared) -> BatchResult:
        async with self.gate.transaction() as tx:
            result = await self.applier.write(tx, prepared)
            await self._publish(result)
            committing = time.perf_counter()
        metrics.SINK_COMMIT_SECONDS.observe(time.perf_counter() - committing)
        return result
