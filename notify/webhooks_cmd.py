"""`sitewatch webhooks add|list|remove|seal`: the subscriptions the notifier delivers to.

Secrets never go on the command line (where `ps` and shell history show them): `add`
reads one from `--secret-file FILE` (`-` for stdin) or `SITEWATCH_WEBHOOK_SECRET`, or
makes one up and prints it once. They are stored sealed with `SITEWATCH_SECRET_KEY`.
A URL whose host is (or resolves to) a loopback, private, link-local or metadata
address is refused unless `SITEWATCH_PROBE_ALLOW_PRIVATE=1`, as for probes.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import secrets
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

from sitewatch.crypto import is_sealed
from sitewatch.probes.safety import DEFAULT_PORTS, is_blocked
from sitewatch.settings import Settings
from sitewatch.sink.db import make_engine

from . import tables as t

#: a secret's length bounds (the sealed form must fit its column)
MIN_SECRET, MAX_SECRET = 16, 256
RESOLVE_TIMEOUT_S = 5.0


class WebhookError(ValueError):
    """Refused input: printed, exit 2."""


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


def read_secret(args: argparse.Namespace, settings: Settings) -> tuple[str, bool]:
    """(secret, generated)."""
    if args.secret_on_argv is not None:
        raise WebhookError(
            "--secret is gone: a command line is visible to every user of the machine; "
            "use --secret-file FILE (`-`: stdin) or SITEWATCH_WEBHOOK_SECRET"
        )
    if args.secret_file:
        try:
            if args.secret_file == "-":
                text = sys.stdin.read()
            else:
                text = Path(args.secret_file).read_text()
        except OSError as exc:
            raise WebhookError(f"cannot read the secret: {exc}") from None
        secret, generated = text.rstrip("\r\n"), False
    elif settings.webhook_secret is not None:
        secret, generated = settings.webhook_secret.get_secret_value(), False
    else:
        return secrets.token_hex(24), True
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise WebhookError(f"a secret is {MIN_SECRET} to {MAX_SECRET} characters")
    return secret, generated


def check_target(url: str, allow_private: bool) -> list[str]:
    """Refuse URLs no notifier should call; returns warnings (e.g. an unresolvable host)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise WebhookError(f"bad port in {url!r}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise WebhookError(f"not an http(s) URL: {url!r}")
    if len(url) > 2048:
        raise WebhookError("URL longer than 2048 characters")
    if parts.username or parts.password:
        raise WebhookError("no credentials in the URL: the signature authenticates deliveries")
    if allow_private:
        return []
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port or DEFAULT_PORTS[parts.scheme])
        except (OSError, UnicodeError):
            return [f"cannot resolve {host} now; the notifier checks its addresses at delivery"]
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    blocked = [a for a in addresses if is_blocked(a)]
    if blocked:
        raise WebhookError(
            f"{host} is (or resolves to) a loopback, private, link-local or metadata address; "
            "set SITEWATCH_PROBE_ALLOW_PRIVATE=1 to allow it (tests, demo)"
        )
    return []


async def _add(settings: Settings, url: str, stored: str, site: int | None) -> int:
    engine = make_engine(settings.db_url)
    try:
        async with engine.begin() as conn:
            res = await conn.execute(
                sa.insert(t.subscriptions).values(url=url, secret=stored, site_id=site)
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
                    "sealed" if is_sealed(r.secret) else "plaintext (run `webhooks seal`)",
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


async def _seal(settings: Settings) -> int:
    box = settings.secret_box
    assert box is not None
    s = t.subscriptions
    engine = make_engine(settings.db_url)
    sealed = 0
    try:
        async with engine.begin() as conn:
            for row in await conn.execute(sa.select(s.c.id, s.c.secret)):
                if not is_sealed(row.secret):
                    await conn.execute(
                        sa.update(s).where(s.c.id == row.id).values(secret=box.seal(row.secret))
                    )
                    sealed += 1
    finally:
        await engine.dispose()
    return sealed


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return _run(args, settings)
    except WebhookError as exc:
        print(f"sitewatch webhooks: {exc}", file=sys.stderr)
        return 2


def _need_key(settings: Settings) -> None:
    if settings.secret_box is None:
        raise WebhookError(
            "SITEWATCH_SECRET_KEY is not set: webhook secrets are stored sealed with it "
            "(and the notifier needs the same key)"
        )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "add":
        _need_key(settings)
        for warning in check_target(args.url, settings.probe_allow_private):
            print(f"sitewatch webhooks: warning: {warning}", file=sys.stderr)
        secret, generated = read_secret(args, settings)
        box = settings.secret_box
        assert box is not None
        sub_id = asyncio.run(_add(settings, args.url, box.seal(secret), args.site))
        print(f"{sub_id}\t{args.url}")
        if generated:
            print(f"secret: {secret}")
        return 0
    if args.action == "list":
        for row in asyncio.run(_list(settings)):
            print("\t".join(str(c) for c in row))
        return 0
    if args.action == "seal":
        _need_key(settings)
        print(f"sealed {asyncio.run(_seal(settings))} secret(s)")
        return 0
    removed = asyncio.run(_remove(settings, args.id))
    if not removed:
        print(f"sitewatch webhooks: no subscription {args.id}", file=sys.stderr)
        return 1
    print(f"removed {args.id}")
    return 0
