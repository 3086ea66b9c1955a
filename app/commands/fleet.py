"""`sitewatch fleet`: serve the local demo sites with scripted behaviours
(`sitewatch.probes.fleet`)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from sitewatch.probes.fleet import start_demo_fleet
from sitewatch.settings import Settings

from .probing import stop_event


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--extra-up", type=int, default=0, help="more always-up sites")
    parser.add_argument("--admin-port", type=int, default=0, help="admin API port (0: any)")
    parser.add_argument(
        "--ca-out", type=Path, default=None, help="where to write the fleet CA (PEM)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace, conf: Settings) -> int:
    # plain asyncio: under uvloop this server died of the SIGTERM it handles (rc 143)
    return asyncio.run(_serve_forever(args, conf))


async def _serve_forever(args: argparse.Namespace, conf: Settings) -> int:
    stop = stop_event()  # first: a SIGTERM during start-up still stops cleanly
    fleet = await start_demo_fleet(args.extra_up, args.admin_port)
    ca_path = fleet.write_ca(args.ca_out or conf.state_dir / "fleet-ca.pem")
    if args.json:
        print(
            json.dumps(
                {
                    "admin": fleet.admin_url,
                    "ca": str(ca_path),
                    "sites": [s.describe() for s in fleet.sites.values()],
                }
            ),
            flush=True,
        )
    else:
        print(f'admin {fleet.admin_url}  (PUT /sites/<name> {{"behaviour": ...}})')
        print(f"ca    {ca_path}  (SITEWATCH_PROBE_EXTRA_CA)")
        for site in fleet.sites.values():
            print(f"{site.name:22} {site.script.behaviour.value:20} {site.url}", flush=True)
    await stop.wait()
    await fleet.close()
    return 0
