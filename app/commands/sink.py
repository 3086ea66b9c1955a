"""`sitewatch sink`: write `site-events` and `sites` into the database (`sitewatch.sink`)."""

from __future__ import annotations

import argparse
import asyncio
import signal

import structlog

from sitewatch.settings import Settings
from sitewatch.sink.consumer import SchemaMissing, Sink

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size", type=int, default=10_000, help="most records per transaction"
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=None,
        help="consumer group session timeout (default 6000 on Tansu, 10000 on Kafka)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def main() -> None:
        sink = Sink(settings, max_batch=args.batch_size, session_timeout_ms=args.session_timeout_ms)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sink.stop)
        await sink.run()

    if settings.db_url.startswith("sqlite"):
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(main())
    except SchemaMissing as exc:
        log.error(str(exc))
        return 2
    return 0
