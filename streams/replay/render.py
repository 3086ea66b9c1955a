"""What replay prints: the transitions (`jsonl` wire records or a table), the `--diff`
report, and the summary line on stderr."""

from __future__ import annotations

import enum
import io
from collections.abc import Sequence
from typing import Final

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
    # No borders, two spaces between columns, no colour, no trailing blanks: one aligned
    # line per transition that splits on whitespace into its cells, as scripts read it.
    table = Table(box=None, pad_edge=False, padding=(0, 1))
    for name in _TABLE_COLUMNS:
        table.add_column(name, no_wrap=True)
    rows = [_cells(t) for t in items]
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: cell values are not markup
    # as wide as the widest cells: the table never wraps, whatever the terminal
    columns = zip(_TABLE_COLUMNS, *rows, strict=False)
    width = sum(max(cell_len(cell) for cell in column) + 2 for column in columns)
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, highlight=False).print(table)
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())


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
