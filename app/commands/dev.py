"""`sitewatch dev`: the whole system locally with a live view (`sitewatch.dev`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from sitewatch.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sites", type=Path, default=None, help="file of URLs (one a line) instead of the demo"
    )
    parser.add_argument(
        "--interval", type=int, default=10, help="check interval of every site, s (default 10)"
    )
    parser.add_argument(
        "--no-ui",
        action="store_true",
        help="print transitions as lines, no live view (the default when stdout is not a terminal)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="stop everything after this many seconds"
    )


def run(args: argparse.Namespace, conf: Settings) -> int:
    # imported here: `sitewatch dev --help` loads no Kafka client, fleet or rich
    from sitewatch.dev.session import DevOptions, run_dev

    if conf.log_level == "INFO":  # keep our own terminal for the view; children log to files
        logging.getLogger().setLevel(logging.WARNING)
    # rich's live view renders only at the end when stdout is a file or a pipe: there,
    # print lines as things happen instead
    plain = args.no_ui or not sys.stdout.isatty()
    options = DevOptions(args.sites, args.interval, plain, args.duration)
    return asyncio.run(run_dev(conf, options))
