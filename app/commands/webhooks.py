"""`sitewatch webhooks add|list|remove|seal`: the subscriptions the notifier delivers to.

Secrets never go on the command line (where `ps` and shell history show them): `add`
reads one from `--secret-file FILE` (`-` for stdin) or `SITEWATCH_WEBHOOK_SECRET`, or
makes one up and prints it once (`sitewatch.notify.subscriptions`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from sitewatch.notify import subscriptions
from sitewatch.notify.subscriptions import WebhookError
from sitewatch.settings import Settings
from sitewatch.sink.db import make_engine

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser(
        "add",
        allow_abbrev=False,  # `--secret X` must not be taken for `--secret-file X`
        help="subscribe URL to downs and recoveries",
        description="The HMAC secret comes from --secret-file, else SITEWATCH_WEBHOOK_SECRET, "
        "else a new random one is printed once. Needs SITEWATCH_SECRET_KEY (secrets are "
        "stored sealed).",
    )
    add.add_argument("url")
    add.add_argument(
        "--secret-file",
        metavar="FILE",
        help="read the HMAC secret from FILE (`-`: stdin); trailing newlines are dropped",
    )
    add.add_argument("--site", type=int, help="only this site (default: every site)")
    # the old way, refused with a pointer to the new ones (`ps` shows a command line)
    add.add_argument("--secret", dest="secret_on_argv", help=argparse.SUPPRESS)
    sub.add_parser("list", help="list subscriptions (secrets never shown)")
    rm = sub.add_parser("remove", help="delete a subscription and its pending deliveries")
    rm.add_argument("id", type=int)
    sub.add_parser(
        "seal", help="seal secrets stored in plaintext (before sealing existed) with the key"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return _run(args, settings)
    except WebhookError as exc:
        print(f"sitewatch webhooks: {exc}", file=sys.stderr)
        return 2


def _in_transaction(settings: Settings, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`work` in one transaction on a database connection of its own."""

    async def main() -> T:
        engine = make_engine(settings.db_url)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "add":
        box = subscriptions.sealing_box(settings)
        for warning in subscriptions.check_target(args.url, settings.probe_allow_private):
            print(f"sitewatch webhooks: warning: {warning}", file=sys.stderr)
        if args.secret_on_argv is not None:
            raise WebhookError(
                "--secret is gone: a command line is visible to every user of the machine; "
                "use --secret-file FILE (`-`: stdin) or SITEWATCH_WEBHOOK_SECRET"
            )
        secret, generated = subscriptions.read_secret(args.secret_file, settings)
        sealed = box.seal(secret)
        sub_id = _in_transaction(
            settings, lambda conn: subscriptions.add(conn, args.url, sealed, args.site)
        )
        print(f"{sub_id}\t{args.url}")
        if generated:
            print(f"secret: {secret}")
        return 0
    if args.action == "list":
        for row in _in_transaction(settings, subscriptions.list_all):
            print("\t".join(str(c) for c in row))
        return 0
    if args.action == "seal":
        box = subscriptions.sealing_box(settings)
        sealed_count = _in_transaction(
            settings, lambda conn: subscriptions.seal_plaintext(conn, box)
        )
        print(f"sealed {sealed_count} secret(s)")
        return 0
    removed = _in_transaction(settings, lambda conn: subscriptions.remove(conn, args.id))
    if not removed:
        print(f"sitewatch webhooks: no subscription {args.id}", file=sys.stderr)
        return 1
    print(f"removed {args.id}")
    return 0
