"""Fixtures for the probe tests: the local fleet, a loopback DNS server, a checker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from sitewatch.probes.checks import Checker, CheckerConfig
from sitewatch.probes.fleet import Fleet, start_demo_fleet

#: name -> (A/AAAA answers, rcode); names not listed: NXDOMAIN; "slow." never answers
DNS_ZONE: dict[str, tuple[list[str], int]] = {
    "ok.test.": (["127.0.0.1", "::1"], dns.rcode.NOERROR),
    "public.test.": (["93.184.216.34"], dns.rcode.NOERROR),  # never connected to
    "servfail.test.": ([], dns.rcode.SERVFAIL),
    "refused.test.": ([], dns.rcode.REFUSED),
    "empty.test.": ([], dns.rcode.NOERROR),
}


class _DnsServer(asyncio.DatagramProtocol):
    """A tiny authoritative server on 127.0.0.1 answering from DNS_ZONE."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().lower()
        if name == "slow.test.":
            return  # the client times out
        reply = dns.message.make_response(query)
        addrs, rcode = DNS_ZONE.get(name, ([], dns.rcode.NXDOMAIN))
        reply.set_rcode(rcode)
        want = question.rdtype
        matching = [a for a in addrs if (":" in a) == (want == dns.rdatatype.AAAA)]
        if matching:
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", want, *matching))
        self.transport.sendto(reply.to_wire(), addr)


@pytest.fixture(scope="session")
async def dns_server() -> AsyncIterator[tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_DnsServer, local_addr=("127.0.0.1", 0))
    yield ("127.0.0.1", transport.get_extra_info("sockname")[1])
    transport.close()


@pytest.fixture(scope="session")
async def fleet() -> AsyncIterator[Fleet]:
    running = await start_demo_fleet()
    yield running
    await running.close()


@pytest.fixture(scope="session")
def fleet_ca(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fleet.write_ca(tmp_path_factory.mktemp("fleet") / "ca.pem")


@pytest.fixture(scope="session")
async def checker(fleet_ca: Path, dns_server: tuple[str, int]) -> AsyncIterator[Checker]:
    config = CheckerConfig(
        allow_private=True, extra_ca_file=str(fleet_ca), nameservers=(dns_server,)
    )
    async with Checker(config) as running:
        yield running
