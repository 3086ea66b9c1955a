"""Which addresses a probe may connect to, and what a sensible target looks like.

A monitor that fetches any URL it is given is an SSRF tool: the sites topic could point
it at the metadata service or the database next door. So every address a check is about
to connect to (not the name in the URL: DNS rebinding would change it between checks)
passes `is_blocked` first, unless `SITEWATCH_PROBE_ALLOW_PRIVATE=1`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

#: schemes the probes understand, with their default port
DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}


class BlockedTargetError(Exception):
    """Every address of the target is loopback/private/link-local/multicast/reserved."""


class InvalidTargetError(Exception):
    """The URL or the site's settings make no sense to check."""


def is_blocked(address: str) -> bool:
    """True for addresses a public monitor must never reach (unparsable ones included)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return bool(
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or not ip.is_global
    )


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed, validated URL: what every check starts from."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def is_https(self) -> bool:
        return self.scheme == "https"


def parse_target(url: str) -> Target:
    """Validate `url` (http/https, a host, a valid port) or raise InvalidTargetError."""
    try:
        parts: SplitResult = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidTargetError(f"unparsable URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidTargetError(f"unsupported scheme {parts.scheme!r} (http or https only)")
    host = parts.hostname
    if not host:
        raise InvalidTargetError("URL has no host")
    if port == 0:
        raise InvalidTargetError("port 0 is not a valid target port")
    return Target(url=url.strip(), scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme])
