"""`sitewatch keys create|list|revoke`: API keys (the token is printed once, alone on the
last line; only its SHA-256 is stored). The keys themselves: `sitewatch.api.keys`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sitewatch.api import keys
from sitewatch.api.timefmt import wire
from sitewatch.settings import Settings
from sitewatch.sink.db import connect_once


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a key; prints its token once")
    create.add_argument("--name", required=True, help="who or what uses it (audit log)")
    create.add_argument(
        "--scope", required=True, choices=[s.value for s in keys.Scope], help="read < write < admin"
    )
    sub.add_parser("list", help="list keys (never their tokens)")
    rm = sub.add_parser("revoke", help="revoke the live key of this name")
    rm.add_argument("name")


async def _create(settings: Settings, name: str, scope: keys.Scope) -> tuple[keys.ApiKey, str]:
    async with connect_once(settings.db_url, begin=True) as conn:
        return await keys.create(conn, name, scope)


async def _list(settings: Settings) -> list[keys.ApiKey]:
    async with connect_once(settings.db_url) as conn:
        return await keys.list_keys(conn)


async def _revoke(settings: Settings, name: str) -> int:
    async with connect_once(settings.db_url, begin=True) as conn:
        return await keys.revoke(conn, name)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.action == "create":
            key, token = asyncio.run(_create(settings, args.name, keys.Scope(args.scope)))
            print(f"created key {key.name!r} (scope {key.scope}); the token is shown only once:")
            print(token)
            return 0
        if args.action == "list":
            print("name\tscope\tcreated_at\trevoked_at")
            for k in asyncio.run(_list(settings)):
                revoked = wire(k.revoked_at) if k.revoked_at else "-"
                print(f"{k.name}\t{k.scope}\t{wire(k.created_at)}\t{revoked}")
            return 0
        if asyncio.run(_revoke(settings, args.name)) == 0:
            print(f"sitewatch keys: no live key named {args.name!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.name}")
        return 0
    except keys.KeyRefused as exc:
        print(f"sitewatch keys: {exc}", file=sys.stderr)
        return 1
