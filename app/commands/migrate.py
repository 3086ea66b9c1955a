"""`sitewatch migrate`: upgrade the database schema to head (or `--downgrade REV`)."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from sitewatch.migrations.command import downgrade, upgrade
from sitewatch.settings import Settings

#: the logger the `migrate` lines have always named (log consumers may filter on it)
log = structlog.get_logger("sitewatch.migrations.command")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--downgrade",
        metavar="REV",
        help="downgrade to revision REV (`base` removes every table) instead of upgrading",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.db_url
    if url.startswith("sqlite"):  # the default database lives under the state dir
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    if args.downgrade:
        asyncio.run(downgrade(url, args.downgrade))
        log.info("downgraded", revision=args.downgrade)
    else:
        asyncio.run(upgrade(url))
        log.info("migrated to head")
    return 0
