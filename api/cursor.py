"""Opaque page cursors: base64url of a small JSON array naming the list and its position.

A client passes `next_cursor` back as `cursor` and must not look inside; a cursor that
does not decode, or belongs to another list, is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Any

import msgspec

from .problems import Kind, Problem


class List(enum.StrEnum):
    """The paged lists (a cursor of one is refused by the others)."""

    SITES = "s"
    EVENTS = "e"
    WEBHOOKS = "w"
    DELIVERIES = "d"


_MAX_LEN = 512


def encode(kind: List, *position: Any) -> str:
    raw = msgspec.json.encode([kind.value, *position])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(kind: List, cursor: str, *types: type) -> tuple[Any, ...]:
    """The position of a cursor of list `kind`, each element checked against `types`."""
    try:
        if len(cursor) > _MAX_LEN:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        shape: Any = tuple.__class_getitem__((str, *types))
        decoded = msgspec.json.decode(raw, type=shape)
    except (ValueError, binascii.Error, msgspec.DecodeError, msgspec.ValidationError):
        raise Problem(Kind.INVALID_CURSOR, "cursor is not one this API handed out") from None
    if decoded[0] != kind.value:
        raise Problem(Kind.INVALID_CURSOR, "cursor belongs to another list")
    return tuple(decoded[1:])
