"""`sitewatch api`: the REST API /api/v1, the status pages and /metrics on SITEWATCH_API_LISTEN."""

from __future__ import annotations

import argparse
import asyncio
import signal

from sitewatch.api.server import serve
from sitewatch.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`sitewatch api` is configured by SITEWATCH_API_LISTEN and the common settings."""


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await serve(settings, stop)

    return asyncio.run(main())
