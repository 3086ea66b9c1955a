"""`sitewatch notify`: signed webhooks for downs and recoveries (`sitewatch.notify`)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from sitewatch.notify.notifier import Notifier
from sitewatch.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="a notifier with no stored position starts at the oldest transition "
        "(default: the newest)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def main() -> int:
        notifier = Notifier(settings, from_beginning=args.from_beginning)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, notifier.stop)
        return await notifier.run()

    return asyncio.run(main())
