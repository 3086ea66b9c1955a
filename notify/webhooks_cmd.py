"""`sitewatch webhooks add|list|remove`: the subscriptions the notifier delivers to."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from urllib.parse import urlsplit

import sqlalchemy as sa

from sitewatch.settings import Settings
from sitewatch.sink.db import make_engine

from . import tables as t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="subscribe URL to downs and recoveries")
    add.add_argument("url")
    add.add_argument("--secret", help="HMAC secret (default: a new random one, printed)")
    add.add_argument("--site", type=int, help="only this site (default: every site)")
    sub.add_parser("list", help="list subscriptions (secrets masked)")
    rm = sub.add_parser("remove", help="delete a subscription and its pending deliveries")
    rm.add_argument("id", type=int)


async def _add(settings: Settings, url: str, secret: str, site: int | None) -> int:
    engine = make_engine(settings.db_url)
    try:
        async with engine.begin() as conn:
            res = await conn.execute(
                sa.insert(t.subscriptions).values(url=url, secret=secret, site_id=site)
            )
            key = res.inserted_primary_key
            assert key is not None
            return int(key[0])
    finally:
        await engine.dispose()


async def _list(settings: Settings) -> list[tuple[int, str, str, str, str]]:
    s = t.subscriptions
    engine = make_engine(settings.db_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(s.c.id, s.c.url, s.c.secret, s.c.site_id, s.c.created_at).order_by(s.c.id)
            )
            return [
                (
                    r.id,
                    r.url,
                    r.secret[:4] + "…",
                    "all" if r.site_id is None else str(r.site_id),
                    f"{r.created_at:%Y-%m-%dT%H:%M:%S}Z",
                )
                for r in rows
            ]
    finally:
        await engine.dispose()


async def _remove(settings: Settings, sub_id: int) -> int:
    engine = make_engine(settings.db_url)
    try:
        async with engine.begin() as conn:
            res = await conn.execute(
                sa.delete(t.subscriptions).where(t.subscriptions.c.id == sub_id)
            )
            return int(res.rowcount)
    finally:
        await engine.dispose()


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "add":
        parts = urlsplit(args.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            print(f"sitewatch webhooks: not an http(s) URL: {args.url!r}", file=sys.stderr)
            return 2
        secret = args.secret or secrets.token_hex(24)
        sub_id = asyncio.run(_add(settings, args.url, secret, args.site))
        print(f"{sub_id}\t{args.url}")
        if not args.secret:
            print(f"secret: {secret}")
        return 0
    if args.action == "list":
        for row in asyncio.run(_list(settings)):
            print("\t".join(str(c) for c in row))
        return 0
    removed = asyncio.run(_remove(settings, args.id))
    if not removed:
        print(f"sitewatch webhooks: no subscription {args.id}", file=sys.stderr)
        return 1
    print(f"removed {args.id}")
    return 0
