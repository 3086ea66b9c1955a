"""Message keys: every per-site record is keyed by its site id."""

from __future__ import annotations

from .limits import MAX_BIGINT


def site_key(site_id: int) -> bytes:
    """Message key of every per-site record: the decimal site id."""
    return str(site_id).encode()


def headers_ref(site_id: int) -> str:
    """A verify request's reference to the custom headers of its site's `sites` record."""
    return f"sites:{site_id}"


def parse_site_key(key: bytes | None) -> int:
    """The site id of a message key: canonical decimal only (`42`, not `042` or `٤٢`),
    so that a key the readers accept is the key the producers partition by."""
    if key is None or not 0 < len(key) <= 19 or not key.isdigit() or key[:1] == b"0":
        shown = key if key is None or len(key) <= 40 else key[:40] + b"..."
        raise ValueError(f"message key must be the decimal site id, got {shown!r}")
    site_id = int(key)
    if site_id > MAX_BIGINT:
        raise ValueError(f"site id {site_id} is out of range")
    return site_id
