"""The API server: its parts put together (database, publisher, app) and served on
SITEWATCH_API_LISTEN until told to stop (`sitewatch api`, `sitewatch.commands.api`)."""

from __future__ import annotations

import asyncio
import sys

import structlog
from aiohttp import web

from sitewatch import gcpolicy
from sitewatch.settings import Settings
from sitewatch.sink.db import make_engine
from sitewatch.streams.topics import TopicNames

from .app import build
from .metrics import ApiMetrics
from .publisher import Publisher
from .routing import Context

log = structlog.get_logger(__name__)


def assemble(settings: Settings) -> Context:
    """What every handler shares: the database, the publisher, the metrics, the secrets."""
    # a pool for concurrent requests (SQLite's engine takes no pool sizes)
    pool = {} if settings.db_url.startswith("sqlite") else {"pool_size": 10, "max_overflow": 10}
    names = TopicNames(settings.topic_prefix)
    return Context(
        engine=make_engine(settings.db_url, **pool),
        publisher=Publisher(settings.bootstrap_servers, names, settings.partitions),
        names=names,
        metrics=ApiMetrics(),
        secrets=settings.secret_box,
        allow_private_targets=settings.probe_allow_private,
    )


async def serve(settings: Settings, stop: asyncio.Event) -> int:
    """The REST API /api/v1, the status pages and /metrics until `stop` is set; the exit
    code (2: the address cannot be listened on)."""
    host, port = settings.api_address
    ctx = assemble(settings)
    engine, publisher = ctx.engine, ctx.publisher
    runner = web.AppRunner(build(ctx), access_log=None, handle_signals=False)
    await runner.setup()
    # the modules and app built so far live as long as the process: keep them out of the
    # collector's full passes, which otherwise land inside a request that allocates
    # (an uptime report builds thousands of tuples) and cost it tens of milliseconds
    gcpolicy.settle()
    try:
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as exc:
            print(f"sitewatch api: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return 2
        publisher.start()
        log.info(
            "api listening",
            url=f"http://{settings.api_listen}/api/v1",
            status_page=f"http://{settings.api_listen}/",
            db=engine.url.render_as_string(hide_password=True),
        )
        await stop.wait()
        log.info("api stopping")
        return 0
    finally:
        await runner.cleanup()
        await publisher.stop()
        await engine.dispose()
