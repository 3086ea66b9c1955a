"""`sitewatch replay`: run the worker's lifecycle again over recorded `check-results`.

Replay feeds the recorded inputs through the very `Processor` the worker uses (same
pure core, same Kafka offsets as input positions, same ticks), so what it prints is
byte for byte what the worker published, and `--diff` can hold the two side by side.

How the range is read, per partition of `check-results`, in offset order:

- start: the first record whose own time (`observed_at`, a tick's `at`, a command's
  `issued_at`) is at or after `--from` minus `--lookback`. `offsets_for_times` is only
  a hint (Tansu answers with the broker's write time, docs/contract.md): from the hint we step
  back until a record is older than the start by `--slack`, then scan forward.
- end: just before the first tick whose `at` is at or after `--to` plus `--grace` (or
  the end of the partition), so the ticks that fire timers due before `--to` are
  applied. The stop point depends on record contents only, never on fetch batch
  sizes, which keeps two runs identical.
- settings: all `sites` records of the partition are loaded first; each is applied
  just before the first result whose broker timestamp is not older than its own
  (the worker saw both topics interleaved as delivered; settings rarely change during
  an incident). `--what-if key=value` rewrites every site record before it is applied.

Printed: the transitions whose `at` lies in [from, to), sorted by (at, site, event,
seq), as the encoded wire records (`jsonl`) or a table.

One module per step: `window` (the range, lookback, grace, record times), `whatif`
(setting overrides), `feed` (records through the `Processor`), `reader` (partitions from
Kafka), `runner` (one run over the topics), `diff` (against `site-events`) and `render`
(what is printed). The command itself is `sitewatch.commands.replay`.
"""

from __future__ import annotations

from .diff import DiffLine, Mismatch, diff
from .feed import Replay, sort_transitions
from .reader import FETCH_RECORDS, TopicReader, partition_of
from .render import OutputFormat, render, render_diff, summary
from .runner import Progress, ReplayRun, read_recorded, run_replay
from .whatif import WhatIf, parse_what_if
from .window import (
    DEFAULT_GRACE,
    DEFAULT_LOOKBACK,
    DEFAULT_SLACK,
    Bound,
    ReplayError,
    Window,
    parse_duration_ms,
    parse_time_ms,
    record_stamp,
)

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_LOOKBACK",
    "DEFAULT_SLACK",
    "FETCH_RECORDS",
    "Bound",
    "DiffLine",
    "Mismatch",
    "OutputFormat",
    "Progress",
    "Replay",
    "ReplayError",
    "ReplayRun",
    "TopicReader",
    "WhatIf",
    "Window",
    "diff",
    "parse_duration_ms",
    "parse_time_ms",
    "parse_what_if",
    "partition_of",
    "read_recorded",
    "record_stamp",
    "render",
    "render_diff",
    "run_replay",
    "sort_transitions",
    "summary",
]
