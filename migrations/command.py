"""Alembic upgrade and downgrade, run programmatically on our own engine (no alembic.ini).

What `sitewatch migrate` (`sitewatch.commands.migrate`), `sitewatch dev` and the tests
run. The script location is the installed `sitewatch.migrations` package, found with
importlib.resources, so a wheel or an editable install behave the same.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from sitewatch.sink.db import make_engine


def alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("sitewatch.migrations")))
    cfg.attributes["connection"] = connection
    return cfg


async def _run(url: str, step: Callable[[Config], None]) -> None:
    """`step` (an `alembic.command`) in one transaction on a short-lived engine."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: step(alembic_config(sync)))
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    await _run(url, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(url: str, revision: str) -> None:
    await _run(url, lambda cfg: command.downgrade(cfg, revision))
