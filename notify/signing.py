"""`X-Sitewatch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

SIGNATURE_HEADER: Final = "X-Sitewatch-Signature"
DELIVERY_HEADER: Final = "X-Sitewatch-Delivery"
EVENT_HEADER: Final = "X-Sitewatch-Event"
#: receivers reject signatures older than this (docs/lifecycle.md, Notifications)
MAX_AGE_S: Final = 300


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, now: int | None = None) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale ones."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    current = int(time.time()) if now is None else now
    if abs(current - t) > MAX_AGE_S:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))
