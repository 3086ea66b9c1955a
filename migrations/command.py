"""`sitewatch migrate`: Alembic upgrade to head (or `--downgrade REV`), no alembic.ini.

The script location is the installed `sitewatch.migrations` package, found with
importlib.resources, so a wheel or an editable install behave the same.
"""

from __future__ import annotations

import argparse
import asyncio
from importlib import resources

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from sitewatch.settings import Settings
from sitewatch.sink.db import make_engine

log = structlog.get_logger(__name__)


def alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("sitewatch.migrations")))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
    finally:
        await engine.dispose()


async def downgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))
    finally:
        await engine.dispose()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--downgrade",
        metavar="REV",
        help="downgrade to revision REV (`base` removes every table) instead of upgrading",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.db_url
    if url.startswith("sqlite"):
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    if args.downgrade:
        asyncio.run(downgrade(url, args.downgrade))
        log.info("downgraded", revision=args.downgrade)
    else:
        asyncio.run(upgrade(url))
        log.info("migrated to head")
    return 0
