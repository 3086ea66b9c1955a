"""Which addresses a probe may connect to, and what a sensible target looks like.

A monitor that fetches any URL it is given is an SSRF tool: the sites topic could point
it at the metadata service or the database next door. So every address a check (or a
webhook delivery) is about to connect to (not the name in the URL: DNS rebinding would
change it between checks) passes `is_blocked` first, unless
`SITEWATCH_PROBE_ALLOW_PRIVATE=1`.

The policy is an explicit deny list, not `ipaddress`'s `is_global`/`is_private`, whose
tables differ between Python patch releases (3.11.7 lets `192.0.0.192`, the 6to4
`2002:a9fe:a9fe::` and `fec0::1` through). IPv4 addresses carried inside IPv6 (mapped,
NAT64, 6to4, Teredo) are judged as the IPv4 address they reach.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import SplitResult, urlsplit

#: schemes the probes understand, with their default port
DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}

#: IANA special-purpose IPv4 registry (RFC 6890 and successors), whole blocks
DENIED_V4: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (incl. 192.0.0.192, NAT64 discovery)
        "192.0.2.0/24",  # TEST-NET-1
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # direct delegation AS112
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
    )
)
#: IANA special-purpose IPv6 registry, whole blocks (embedded IPv4 handled apart)
DENIED_V6: Final = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, IPv4-compatible (deprecated)
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo 2001::/32 is judged apart)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
        "ff00::/8",  # multicast
    )
)
_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64: Final = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")
_TEREDO: Final = ipaddress.IPv6Network("2001::/32")


class BlockedTargetError(Exception):
    """Every address of the target is loopback/private/link-local/multicast/reserved."""


class InvalidTargetError(Exception):
    """The URL or the site's settings make no sense to check."""


def _v4_blocked(ip: ipaddress.IPv4Address) -> bool:
    return any(ip in net for net in DENIED_V4)


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches: mapped, NAT64, 6to4, Teredo."""
    packed = int(ip)
    if ip in _MAPPED or any(ip in n for n in _NAT64):
        return [ipaddress.IPv4Address(packed & 0xFFFFFFFF)]
    if ip in _SIX_TO_FOUR:
        return [ipaddress.IPv4Address((packed >> 80) & 0xFFFFFFFF)]
    if ip in _TEREDO:
        server = ipaddress.IPv4Address((packed >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~packed & 0xFFFFFFFF)  # stored inverted
        return [server, client]
    return []


@lru_cache(maxsize=1 << 16)  # pure, and asked twice per check (resolved, then connected)
def is_blocked(address: str) -> bool:
    """True for addresses a public monitor must never reach (unparsable ones included)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_blocked(ip)
    inner = _embedded_v4(ip)
    if inner:  # as good as the IPv4 it carries: ::ffff:127.0.0.1 is loopback too
        return any(_v4_blocked(v4) for v4 in inner)
    return any(ip in net for net in DENIED_V6)


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

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@lru_cache(maxsize=1 << 16)  # pure (Target is frozen), and asked on every check of a site
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


def may_send_headers(configured: Target, hop: Target) -> bool:
    """Whether a site's custom headers may go with a request to `hop`.

    Only to the configured origin (scheme, host, port), and to the same host upgraded
    from http to https on the default ports; never to another host, never from https
    down to http: an open redirect on the site must not hand its credentials out.
    """
    if hop.origin == configured.origin:
        return True
    return (
        configured.scheme == "http"
        and hop.scheme == "https"
        and hop.host == configured.host
        and configured.port == DEFAULT_PORTS["http"]
        and hop.port == DEFAULT_PORTS["https"]
    )
