"""Apply one batch of `site-events` and `sites` messages in one database transaction.

Per batch: decode and fold (`fold.py`, pure) what `load.py` read, then write the rows
(`write.py`) and the consumer offsets through the gate, all in the caller's
transaction (invariant 1, exactly-once effect). Poison and contradictions go to dead
letters; the batch goes on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sitewatch.crypto import SecretBox
from sitewatch.streams import records
from sitewatch.streams.deadletter import dead_letter_for
from sitewatch.streams.message import ConsumedRecord
from sitewatch.streams.topics import TopicNames

from . import fold, offsets, write
from .gate import Tx
from .load import load
from .shadow import ShadowOverlay


@dataclass(slots=True)
class BatchResult:
    """What the batch did (or, in shadow mode, would have done)."""

    counts: Counter[str] = field(default_factory=Counter)
    dead_letters: list[tuple[records.DeadLetter, bytes | None]] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def dead(self, msg: ConsumedRecord, error: str, consumer: str, now_ms: int) -> None:
        """Dead-letter `msg` with `error`, found by `consumer` (the sink's group)."""
        self.dead_letters.append((dead_letter_for(msg, error, consumer, now_ms), msg.key))
        self.counts["dead_letters"] += 1


@dataclass(slots=True)
class Prepared:
    """A folded batch: its rows, ready to write, and what they leave behind."""

    result: BatchResult
    messages: int
    rows: write.Rows
    #: the state these rows leave behind, for folding the next batch before they commit
    overlay: ShadowOverlay


class BatchApplier:
    """Stateless between batches when writing: what it needs is read in the transaction."""

    def __init__(self, topics: TopicNames, group: str, secrets: SecretBox | None = None) -> None:
        self.topics = topics
        self.group = group
        #: seals site header values before they are stored (None: values are not stored)
        self.secrets = secrets
        self.shadow = ShadowOverlay()

    async def apply(self, tx: Tx, messages: Sequence[ConsumedRecord], now_ms: int) -> BatchResult:
        """Fold and write one batch in `tx` (the caller commits)."""
        shadow = None if tx.writes else self.shadow
        return await self.write(tx, await self.prepare(tx, messages, now_ms, shadow))

    async def prepare(
        self,
        tx: Tx,
        messages: Sequence[ConsumedRecord],
        now_ms: int,
        base: ShadowOverlay | None = None,
    ) -> Prepared:
        """Decode, load and fold a batch: everything but the writes (reads only).

        `base` is what the database does not show yet: shadow mode's memory, or the
        batch still being written when the sink folds the next one (`pipeline.py`);
        what it holds wins over what the reads return. The result's `overlay` is this
        batch's own, for the batch after it.
        """
        batch = fold.decode(messages, self.topics)
        changes = fold.fold(batch, await load(tx, batch, base))
        res = BatchResult()
        offsets.advance(res.offsets, messages)
        for msg, error in batch.poison:
            res.dead(msg, error, self.group, now_ms)
        res.counts.update(changes.counts)
        for c in changes.contradicted:
            res.dead(c.msg, f"contradicts the database: {c.detail}", self.group, now_ms)
        rows = write.rows_of(changes, self.secrets)
        # shadow mode's memory keeps growing; a pipelined batch's overlay is its own
        overlay = base if base is self.shadow and base is not None else ShadowOverlay()
        overlay.apply(changes)  # after the rows are built: it takes the events over
        return Prepared(result=res, messages=len(messages), rows=rows, overlay=overlay)

    async def write(self, tx: Tx, prepared: Prepared) -> BatchResult:
        """Write a prepared batch and its offsets through the gate."""
        res = prepared.result
        await write.write(tx, prepared.rows)
        await write.write_offsets(tx, self.group, res.offsets)
        res.counts.update(tx.report)
        res.counts["messages"] += prepared.messages
        return res

    async def refuse(self, tx: Tx, msg: ConsumedRecord, error: str, now_ms: int) -> BatchResult:
        """Dead-letter one message the database refused, and move its offset past it."""
        res = BatchResult()
        res.dead(msg, error, self.group, now_ms)
        offsets.advance(res.offsets, [msg])
        await write.write_offsets(tx, self.group, res.offsets)
        res.counts.update(tx.report)
        res.counts["messages"] += 1
        return res
