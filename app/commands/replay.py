"""`sitewatch replay`: re-run the lifecycle over a time range (docs/replay.md).

Exit codes: 0 fine, 1 `--diff` found mismatches, 2 bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from sitewatch.settings import Settings
from sitewatch.streams.replay import (
    DEFAULT_GRACE,
    DEFAULT_LOOKBACK,
    DEFAULT_SLACK,
    OutputFormat,
    ReplayError,
    Window,
    diff,
    parse_duration_ms,
    parse_time_ms,
    parse_what_if,
    render,
    render_diff,
    run_replay,
    summary,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", required=True, help="range start, ISO-8601")
    parser.add_argument("--to", dest="end", required=True, help="range end (exclusive), ISO-8601")
    parser.add_argument(
        "--site", type=int, action="append", metavar="ID", help="only this site (repeatable)"
    )
    parser.add_argument(
        "--output", choices=[f.value for f in OutputFormat], default=OutputFormat.JSONL.value
    )
    parser.add_argument(
        "--diff",
        action="store_true",
        help="compare with what site-events recorded; exit 1 on any mismatch",
    )
    parser.add_argument(
        "--lookback",
        default=DEFAULT_LOOKBACK,
        help=f"inputs before --from used to rebuild state (default {DEFAULT_LOOKBACK})",
    )
    parser.add_argument(
        "--grace",
        default=DEFAULT_GRACE,
        help=f"inputs after --to still applied, for timers due in range (default {DEFAULT_GRACE})",
    )
    parser.add_argument(
        "--slack",
        default=DEFAULT_SLACK,
        help=f"how far records may be out of time order in a partition (default {DEFAULT_SLACK})",
    )
    parser.add_argument(
        "--what-if",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a site setting for the replay (num_of_checks=5, quorum=1, "
        "verifiers=eu,us, maintenance=[] ...); repeatable",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace, conf: Settings) -> int:
    try:
        window = Window(
            start_ms=parse_time_ms(args.start),
            end_ms=parse_time_ms(args.end),
            lookback_ms=parse_duration_ms(args.lookback),
            grace_ms=parse_duration_ms(args.grace),
            sites=frozenset(args.site) if args.site else None,
        )
        what_if = parse_what_if(args.what_if)
        slack = parse_duration_ms(args.slack)
        result = asyncio.run(
            run_replay(
                conf,
                window,
                what_if,
                with_recorded=args.diff,
                slack_ms=slack,
                progress=not args.quiet,
            )
        )
    except ReplayError as exc:
        print(f"sitewatch replay: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    if not args.diff:
        out.write(render(result.transitions, OutputFormat(args.output)))
        out.flush()
        print(
            summary(result.inputs, len(result.transitions), result.poison, result.elapsed_s),
            file=sys.stderr,
        )
        return 0
    assert result.recorded is not None
    lines = diff(result.recorded, result.transitions)
    out.write(render_diff(lines, len(result.recorded), len(result.transitions)))
    out.flush()
    return 1 if lines else 0
