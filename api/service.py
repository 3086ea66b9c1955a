"""`sitewatch api`: the REST API /api/v1 (and /metrics) on SITEWATCH_API_LISTEN."""

from __future__ import annotations

import argparse
import asyncio
import signal
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`sitewatch api` is configured by SITEWATCH_API_LISTEN and the common settings."""


async def serve(settings: Settings, stop: asyncio.Event) -> int:
    host, port = settings.api_address
    engine = (
        make_engine(settings.db_url, pool_size=10, max_overflow=10)
        if not (settings.db_url.startswith("sqlite"))
        else make_engine(settings.db_url)
    )
    names = TopicNames(settings.topic_prefix)
    publisher = Publisher(settings.bootstrap_servers, names, settings.partitions)
    ctx = Context(
        engine=engine,
        publisher=publisher,
        names=names,
        metrics=ApiMetrics(),
        secrets=settings.secret_box,
        allow_private_targets=settings.probe_allow_private,
    )
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
            db=engine.url.render_as_string(hide_password=True),
        )
        await stop.wait()
        log.info("api stopping")
        return 0
    finally:
        await runner.cleanup()
        await publisher.stop()
        await engine.dispose()


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await serve(settings, stop)

    return asyncio.run(main())
