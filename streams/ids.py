"""Every id sitewatch derives: UUIDv5 in one namespace, so a replay or a redelivery gives
the same ids as the live run and downstream can dedup by them."""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

#: event, transition, verify-request and delivery ids are UUIDv5 in this namespace
ID_NAMESPACE: Final = uuid.UUID("6f1c2c6e-3b0e-5a7e-9a43-5e1e7a7c0de5")
_NS_BYTES: Final = ID_NAMESPACE.bytes


def uuid5(name: str) -> str:
    """`str(uuid.uuid5(ID_NAMESPACE, name))`, without building UUID objects (it runs for
    every transition)."""
    digest = bytearray(hashlib.sha1(_NS_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_id_for(site_id: int, key: str, started_at: int, opened_by: str) -> str:
    """UUIDv5 of the tuple, `started_at` and the opening input's id: an event closed
    and reopened within the same millisecond still gets a new id."""
    return uuid5(f"event|{site_id}|{key}|{started_at}|{opened_by}")


def transition_id_for(event_id: str, seq: int) -> str:
    return uuid5(f"transition|{event_id}|{seq}")


def request_id_for(event_id: str) -> str:
    return uuid5(f"verify|{event_id}")


def delivery_id_for(subscription_id: int, transition_id: str) -> str:
    """The id of one webhook delivery: a transition to one subscription."""
    return uuid5(f"delivery|{subscription_id}|{transition_id}")
