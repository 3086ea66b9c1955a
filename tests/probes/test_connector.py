"""The notifier's connect step (`GuardedConnector`) through real aiohttp requests to a
loopback server: if an aiohttp release stops calling the hooks the guard is built on
(`resolver=`, `socket_factory=`), these fail."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohappyeyeballs
import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from sitewatch.probes import connector
from sitewatch.probes.connector import AddressGuard, GuardedConnector
from sitewatch.probes.safety import BlockedTargetError


@dataclass
class Server:
    """A loopback HTTP server that records the local address each request reached."""

    host: str
    port: int = 0
    reached: list[str] = field(default_factory=list)


@dataclass
class StaticResolver(AbstractResolver):
    """Answers a name with the next of its scripted address lists (the last one sticks)."""

    answers: list[list[str]]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
            for a in addresses
        ]

    async def close(self) -> None:
        pass


async def _serve(host: str) -> AsyncIterator[Server]:
    server = Server(host)

    async def hello(request: web.Request) -> web.Response:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        server.reached.append(sockname[0] if sockname else "?")
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    server.port = runner.addresses[0][1]
    yield server
    await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async for running in _serve("127.0.0.1"):
        yield running


@pytest.fixture
async def server2() -> AsyncIterator[Server]:
    """On 127.0.0.2: an address the tests' deny list allows."""
    async for running in _serve("127.0.0.2"):
        yield running


@pytest.fixture
def deny_only_127_0_0_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connector, "is_blocked", lambda address: address == "127.0.0.1")


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The addresses the guard's socket factory let through, in order."""
    seen: list[str] = []
    make: Callable[[AddressGuard, aiohappyeyeballs.AddrInfoType], socket.socket]
    make = AddressGuard.socket

    def recording(guard: AddressGuard, addr_info: aiohappyeyeballs.AddrInfoType) -> socket.socket:
        sock = make(guard, addr_info)
        seen.append(str(addr_info[4][0]))
        return sock

    monkeypatch.setattr(AddressGuard, "socket", recording)
    return seen


async def _get(conn: GuardedConnector, url: str) -> str:
    async with (
        aiohttp.ClientSession(connector=conn, trust_env=False) as session,
        session.get(url) as resp,
    ):
        return await resp.text()


async def test_an_ip_literal_of_a_blocked_address_is_refused_at_connect(server: Server) -> None:
    # aiohttp resolves IP literals without the resolver: the socket factory refuses it
    with pytest.raises(BlockedTargetError, match=r"^127\.0\.0\.1 resolves only to blocked"):
        await _get(GuardedConnector(allow_private=False), f"http://127.0.0.1:{server.port}/")
    assert server.reached == []


async def test_a_name_of_blocked_addresses_is_refused(server: Server) -> None:
    resolver = StaticResolver([["127.0.0.1"]])
    conn = GuardedConnector(allow_private=False, resolver=resolver)
    with pytest.raises(BlockedTargetError, match=r"^hooks\.test resolves only to blocked"):
        await _get(conn, f"http://hooks.test:{server.port}/")
    assert server.reached == []


async def test_allow_private_connects(server: Server, connected: list[str]) -> None:
    assert await _get(GuardedConnector(allow_private=True), server_url(server)) == "hello"
    assert server.reached == ["127.0.0.1"] and connected == ["127.0.0.1"]


def server_url(server: Server) -> str:
    return f"http://{server.host}:{server.port}/"


@pytest.mark.usefixtures("deny_only_127_0_0_1")
async def test_the_guard_sees_the_address_actually_connected(
    server2: Server, connected: list[str]
) -> None:
    """A name with a blocked and an allowed address connects to the allowed one only."""
    resolver = StaticResolver([["127.0.0.1", "127.0.0.2"]])
    conn = GuardedConnector(allow_private=False, resolver=resolver)
    assert await _get(conn, f"http://hooks.test:{server2.port}/") == "hello"
    assert connected == ["127.0.0.2"] == server2.reached


@pytest.mark.usefixtures("deny_only_127_0_0_1")
async def test_dns_rebinding_is_refused_at_the_next_connect(
    server2: Server, connected: list[str]
) -> None:
    """Allowed once, the name then resolves to a blocked address: every connect vets."""
    resolver = StaticResolver([["127.0.0.2"], ["127.0.0.1"]])
    conn = GuardedConnector(
        allow_private=False, resolver=resolver, use_dns_cache=False, force_close=True
    )
    async with aiohttp.ClientSession(connector=conn, trust_env=False) as session:
        async with session.get(f"http://hooks.test:{server2.port}/") as resp:
            assert resp.status == 200
        with pytest.raises(BlockedTargetError):
            async with session.get(f"http://hooks.test:{server2.port}/"):
                pass
    assert connected == ["127.0.0.2"] == server2.reached


async def test_the_default_resolver_it_made_is_closed_with_it() -> None:
    conn = GuardedConnector(allow_private=False)
    assert conn.owns_resolver
    await conn.close()
    given = StaticResolver([["127.0.0.2"]])
    assert not GuardedConnector(allow_private=False, resolver=given).owns_resolver
