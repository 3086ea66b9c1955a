"""What replay prints: the transitions (`jsonl` wire records or a table), the `--diff`
report, and the summary line on stderr."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

from sitewatch.streams import records

from .diff import DiffLine, Mismatch


class OutputFormat(enum.StrEnum):
    JSONL = "jsonl"
    TABLE = "table"


_TABLE_COLUMNS: Final = ("at", "site", "check", "seq", "reason", "state", "sev", "source", "event")


def _cells(t: records.Transition) -> tuple[str, ...]:
    sev_after = "-" if t.severity_after is None else str(t.severity_after)
    return (
        t.at,
        str(t.site_id) + (f"/{t.endpoint_id}" if t.endpoint_id else ""),
        t.check_type.value,
        str(t.seq),
        t.reason.value,
        f"{t.state_before.value}->{t.state_after.value}",
        f"{t.severity_before}->{sev_after}",
        t.source,
        t.event_id,
    )


def _table(items: Sequence[records.Transition]) -> str:
    rows = [_TABLE_COLUMNS, *(_cells(t) for t in items)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_TABLE_COLUMNS))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in rows
    )


def render(items: Sequence[records.Transition], fmt: OutputFormat) -> str:
    if fmt is OutputFormat.JSONL:
        return "".join(records.encode(t).decode() + "\n" for t in items)
    return _table(items)


def render_diff(lines: Sequence[DiffLine], recorded: int, replayed: int) -> str:
    """Every mismatch, one a line, then the summary line."""
    counts = {kind: sum(1 for x in lines if x.kind is kind) for kind in Mismatch}
    different_ids = len({x.transition_id for x in lines if x.kind is Mismatch.DIFFERENT})
    return "".join(line.text + "\n" for line in lines) + (
        f"diff: {recorded} recorded, {replayed} replayed, "
        f"{counts[Mismatch.MISSING]} missing, {counts[Mismatch.EXTRA]} extra, "
        f"{different_ids} different\n"
    )


def summary(inputs: int, transitions: int, poison: int, elapsed_s: float) -> str:
    """The stderr line after a (non-diff) replay."""
    return (
        f"replay: {inputs:,} records applied, {transitions} transitions "
        f"in range, {poison} poison records skipped, {elapsed_s:.1f}s"
    )
