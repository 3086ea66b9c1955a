"""Webhook subscriptions: the URLs the notifier delivers to, and their sealed secrets.

Secrets are stored sealed with `SITEWATCH_SECRET_KEY`; one is read from a file (`-`:
stdin) or `SITEWATCH_WEBHOOK_SECRET`, or made up. A URL whose host is (or resolves to)
a loopback, private, link-local or metadata address is refused unless
`SITEWATCH_PROBE_ALLOW_PRIVATE=1`, as for probes (docs/notify.md).
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from sitewatch.crypto import SecretBox, is_sealed
from sitewatch.probes.safety import DEFAULT_PORTS, is_blocked
from sitewatch.settings import Settings

from . import tables as t

#: a secret's length bounds (the sealed form must fit its column)
MIN_SECRET, MAX_SECRET = 16, 256


class WebhookError(ValueError):
    """Refused input: printed, exit 2."""


class Listed(NamedTuple):
    """A subscription as `webhooks list` shows it (never its secret)."""

    id: int
    url: str
    secret: str  # "sealed" or "plaintext (run `webhooks seal`)"
    site: str  # a site id, or "all"
    created_at: str


def sealing_box(settings: Settings) -> SecretBox:
    """The key secrets are sealed with; refused without one."""
    if settings.secret_box is None:
        raise WebhookError(
            "SITEWATCH_SECRET_KEY is not set: webhook secrets are stored sealed with it "
            "(and the notifier needs the same key)"
        )
    return settings.secret_box


def read_secret(secret_file: str | None, settings: Settings) -> tuple[str, bool]:
    """(secret, generated): from `secret_file` (`-`: stdin), else the setting, else new."""
    if secret_file:
        try:
            text = sys.stdin.read() if secret_file == "-" else Path(secret_file).read_text()
        except OSError as exc:
            raise WebhookError(f"cannot read the secret: {exc}") from None
        secret = text.rstrip("\r\n")
    elif settings.webhook_secret is not None:
        secret = settings.webhook_secret.get_secret_value()
    else:
        return secrets.token_hex(24), True
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise WebhookError(f"a secret is {MIN_SECRET} to {MAX_SECRET} characters")
    return secret, False


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


async def add(conn: AsyncConnection, url: str, sealed: str, site: int | None) -> int:
    """A new subscription (every site when `site` is None); returns its id."""
    res = await conn.execute(
        sa.insert(t.subscriptions).values(url=url, secret=sealed, site_id=site)
    )
    key = res.inserted_primary_key
    assert key is not None
    return int(key[0])


async def list_all(conn: AsyncConnection) -> list[Listed]:
    s = t.subscriptions
    rows = await conn.execute(
        sa.select(s.c.id, s.c.url, s.c.secret, s.c.site_id, s.c.created_at).order_by(s.c.id)
    )
    return [
        Listed(
            r.id,
            r.url,
            "sealed" if is_sealed(r.secret) else "plaintext (run `webhooks seal`)",
            "all" if r.site_id is None else str(r.site_id),
            f"{r.created_at:%Y-%m-%dT%H:%M:%S}Z",
        )
        for r in rows
    ]


async def remove(conn: AsyncConnection, sub_id: int) -> int:
    """Delete a subscription (its deliveries go with it, ON DELETE CASCADE); 0 or 1."""
    res = await conn.execute(sa.delete(t.subscriptions).where(t.subscriptions.c.id == sub_id))
    return int(res.rowcount)


async def seal_plaintext(conn: AsyncConnection, box: SecretBox) -> int:
    """Seal the secrets stored in plaintext (before migration 0003); returns how many."""
    s = t.subscriptions
    sealed = 0
    for row in await conn.execute(sa.select(s.c.id, s.c.secret)):
        if not is_sealed(row.secret):
            await conn.execute(
                sa.update(s).where(s.c.id == row.id).values(secret=box.seal(row.secret))
            )
            sealed += 1
    return sealed
