"""The dns check: A and AAAA for the URL's host, asked of the configured nameservers."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Final

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from sitewatch.streams.enums import CheckType, ErrorCause, ErrorKind
from sitewatch.streams.records import Timings

from ..safety import Target, is_blocked
from ._failures import describe
from ._spec import Observation
from ._timings import since_ms

Nameserver = tuple[str, int]

#: failing rcodes told apart, in this order when the A and AAAA answers differ
_RCODE_CAUSES: Final = (
    (dns.rcode.NXDOMAIN, ErrorCause.NXDOMAIN),
    (dns.rcode.SERVFAIL, ErrorCause.SERVFAIL),
    (dns.rcode.REFUSED, ErrorCause.DNS_REFUSED),
)
_ADDRESS_TYPES: Final = (dns.rdatatype.A, dns.rdatatype.AAAA)


def parse_nameserver(text: str) -> Nameserver:
    """`host`, `host:port` or `[v6]:port` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def system_nameservers() -> list[Nameserver]:
    """/etc/resolv.conf's nameservers (none when it cannot be read)."""
    try:
        return [(str(ns), 53) for ns in dns.resolver.Resolver().nameservers]
    except (dns.resolver.NoResolverConfiguration, OSError):
        return []


class _Timed:
    """Observations of one dns check, timed from its start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def obs(
        self, ok: bool, error: ErrorKind, detail: str, cause: ErrorCause | None = None
    ) -> Observation:
        total = since_ms(self.start)
        return Observation(
            CheckType.DNS,
            ok=ok,
            error=error,
            timings=Timings(dns=total, total=total),
            detail=detail,
            error_cause=cause,
        )


async def check_dns(
    target: Target, timeout_s: float, nameservers: list[Nameserver], *, allow_private: bool
) -> Observation:
    """A and AAAA for the URL's host; NXDOMAIN/SERVFAIL/REFUSED/timeout told apart."""
    timed = _Timed()
    host = target.host
    try:
        ipaddress.ip_address(host)
        if not allow_private and is_blocked(host):
            return timed.obs(False, ErrorKind.BLOCKED_TARGET, f"{host} is blocked")
        return timed.obs(True, ErrorKind.NONE, "IP literal: nothing to resolve")
    except ValueError:
        pass
    if not nameservers:
        return timed.obs(False, ErrorKind.DNS, "no nameserver configured", ErrorCause.NO_NAMESERVER)
    try:
        qname = dns.name.from_text(host)
    except dns.exception.DNSException as exc:
        return timed.obs(False, ErrorKind.INVALID_TARGET, describe(exc))
    deadline = time.perf_counter() + timeout_s
    per_server = timeout_s / len(nameservers)
    last_error = "no answer"
    refused = 0  # nameservers that answered with ICMP port unreachable
    for ns_host, port in nameservers:
        budget = min(per_server, deadline - time.perf_counter())
        if budget <= 0:
            break
        try:
            answers = await asyncio.gather(
                *(
                    dns.asyncquery.udp_with_fallback(
                        dns.message.make_query(qname, rdtype), ns_host, timeout=budget, port=port
                    )
                    for rdtype in _ADDRESS_TYPES
                )
            )
        except dns.exception.Timeout:
            last_error = f"nameserver {ns_host}:{port} timed out"
            continue
        except (OSError, dns.exception.DNSException) as exc:
            last_error = describe(exc)
            if isinstance(exc, ConnectionRefusedError):
                refused += 1
                continue  # ICMP port unreachable: try the next server
            return timed.obs(False, ErrorKind.DNS, last_error)
        return _answered(timed, host, [response for response, _tcp in answers], allow_private)
    if refused == len(nameservers):
        return timed.obs(False, ErrorKind.DNS, last_error, ErrorCause.NO_NAMESERVER)
    return timed.obs(False, ErrorKind.TIMEOUT, last_error)


def _answered(
    timed: _Timed, host: str, responses: list[dns.message.Message], allow_private: bool
) -> Observation:
    """The observation of a nameserver's A and AAAA answers."""
    rcodes = {response.rcode() for response in responses}
    for rcode, cause in _RCODE_CAUSES:
        if rcode in rcodes:
            return timed.obs(False, ErrorKind.DNS, f"{host}: {dns.rcode.to_text(rcode)}", cause)
    if rcodes != {dns.rcode.NOERROR}:
        text = ",".join(dns.rcode.to_text(r) for r in rcodes)
        return timed.obs(False, ErrorKind.DNS, f"{host}: {text}", ErrorCause.RCODE)
    addrs = [
        str(rdata.address)
        for response in responses
        for rrset in response.answer
        if rrset.rdtype in _ADDRESS_TYPES
        for rdata in rrset
    ]
    if not addrs:
        return timed.obs(False, ErrorKind.DNS, f"{host}: no A/AAAA records", ErrorCause.NO_ADDRESS)
    if allow_private:
        return timed.obs(True, ErrorKind.NONE, f"{host} -> {', '.join(addrs[:8])}")
    # blocked addresses are counted, never named: a result must not map private
    # networks for whoever reads check-results
    public = [a for a in addrs if not is_blocked(a)]
    if not public:
        return timed.obs(
            False, ErrorKind.BLOCKED_TARGET, f"{host}: all {len(addrs)} addresses blocked"
        )
    hidden = len(addrs) - len(public)
    more = f" (+{hidden} blocked)" if hidden else ""
    return timed.obs(True, ErrorKind.NONE, f"{host} -> {', '.join(public[:8])}{more}")
