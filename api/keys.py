"""API keys: scoped bearer tokens, stored as SHA-256 only (`sitewatch_api_keys`)."""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import api_keys
from .timefmt import db_now

#: tokens start with this, so a leaked one is recognisable (secret scanners, logs)
TOKEN_PREFIX: Final = "sw_"
NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")


class Scope(enum.StrEnum):
    """Ordered: a key of a larger scope may do everything a smaller one may."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Scope) -> bool:
        return self.rank >= needed.rank


_RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


class KeyRefused(ValueError):
    """A key operation that cannot be done (bad name, name taken, no such key)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """What is stored and looked up: hex SHA-256 of the token's UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise KeyRefused(
            f"bad key name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


async def create(conn: AsyncConnection, name: str, scope: Scope) -> tuple[ApiKey, str]:
    """A new key and its token (the only time the token exists outside the caller)."""
    check_name(name)
    token = new_token()
    now = db_now()
    try:
        res = await conn.execute(
            sa.insert(api_keys).values(
                name=name, scope=scope.value, token_sha256=digest(token), created_at=now
            )
        )
    except IntegrityError:
        raise KeyRefused(f"a key named {name!r} exists (revoke it first)") from None
    pk = res.inserted_primary_key
    assert pk is not None
    return ApiKey(int(pk[0]), name, scope, now, None), token


async def list_keys(conn: AsyncConnection) -> list[ApiKey]:
    rows = await conn.execute(sa.select(api_keys).order_by(api_keys.c.id))
    return [_key(r) for r in rows]


async def revoke(conn: AsyncConnection, name: str) -> int:
    """Revoke the live key named `name`; the number of keys revoked (0 or 1)."""
    res = await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=db_now())
    )
    return int(res.rowcount)


async def lookup(conn: AsyncConnection, token: str) -> ApiKey | None:
    """The live key of a token, or None (unknown or revoked)."""
    row = (
        await conn.execute(
            sa.select(api_keys).where(
                api_keys.c.token_sha256 == digest(token), api_keys.c.revoked_at.is_(None)
            )
        )
    ).first()
    return None if row is None else _key(row)


def _key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=int(m["id"]),
        name=str(m["name"]),
        scope=Scope(m["scope"]),
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
    )
