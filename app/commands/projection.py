"""`sitewatch projection check [--repair]`: the projection rebuilt and compared
(`sitewatch.sink.drift`); exit 1 when a site drifts."""

from __future__ import annotations

import argparse
import asyncio

from sitewatch.settings import Settings
from sitewatch.sink.db import make_engine
from sitewatch.sink.drift import Drift, check
from sitewatch.sink.gate import WriteGate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="rebuild and compare")
    parser.add_argument(
        "--repair", action="store_true", help="rewrite drifting sites (obeys SITEWATCH_SINK_WRITES)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def main() -> list[Drift]:
        engine = make_engine(settings.db_url)
        try:
            return await check(WriteGate(engine, settings.sink_writes), repair=args.repair)
        finally:
            await engine.dispose()

    drifts = asyncio.run(main())
    for d in drifts:
        print(f"site {d.site_id}: live {d.live} != rebuilt {d.rebuilt}")
    repaired = args.repair and settings.sink_writes
    print(f"{len(drifts)} drifting site(s)" + (", repaired" if repaired and drifts else ""))
    return 1 if drifts else 0  # drift found is reported as failure, repaired or not
