"""The address guard as an aiohttp connector: what the notifier connects through.

The probes' http check has its own client (`http1.py`); webhooks go through aiohttp,
and this connector refuses blocked addresses at the moment of connecting, the same
deny list as the checks (`safety.is_blocked`; DNS rebinding cannot slip a private
address past a check made earlier on the name).

Built on aiohttp's public hooks only (aiohttp 3.12+), so a release cannot silently
bypass it: the `resolver=` drops the blocked addresses of every name it resolves (a
name with some allowed addresses connects to those), and the `socket_factory=` sees
each address right before it is connected, IP literals too (aiohttp resolves those
without the resolver). `tests/probes/test_connector.py` drives both through real
requests.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohappyeyeballs
import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from .safety import BlockedTargetError, is_blocked


def _blocked(host: str) -> BlockedTargetError:
    return BlockedTargetError(f"{host} resolves only to blocked addresses")


class AddressGuard:
    """The deny list at connect time, unless `allow_private`."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def allowed(self, address: str) -> bool:
        return self.allow_private or not is_blocked(address)

    def vet(self, host: str, found: list[ResolveResult]) -> list[ResolveResult]:
        """The allowed addresses of `host` (BlockedTargetError if none)."""
        kept = [r for r in found if self.allowed(r["host"])]
        if not kept:
            raise _blocked(host)
        return kept

    def socket(self, addr_info: aiohappyeyeballs.AddrInfoType) -> socket.socket:
        """aiohappyeyeballs' socket factory: the socket for the address it is about to
        connect to, or BlockedTargetError. With the resolver's vetting, only an IP
        literal can still be refused here, so the message is the one a name gets."""
        family, type_, proto, _canonname, sockaddr = addr_info
        address = str(sockaddr[0])
        if not self.allowed(address):
            raise _blocked(address)
        return socket.socket(family=family, type=type_, proto=proto)


class GuardedResolver(AbstractResolver):
    """A resolver that answers only with the addresses the guard allows."""

    def __init__(self, guard: AddressGuard, resolver: AbstractResolver) -> None:
        self.guard = guard
        self.resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return self.guard.vet(host, await self.resolver.resolve(host, port, family))

    async def close(self) -> None:
        await self.resolver.close()


class GuardedConnector(aiohttp.TCPConnector):
    """TCPConnector that vets every address it connects to. A `resolver=` given is
    asked first (and left open, as TCPConnector leaves it); else aiohttp's default."""

    def __init__(self, *, allow_private: bool, **kwargs: Any) -> None:
        given: AbstractResolver | None = kwargs.pop("resolver", None)
        self.address_guard = AddressGuard(allow_private=allow_private)
        self.guarded_resolver = GuardedResolver(
            self.address_guard, given or aiohttp.DefaultResolver()
        )
        self.owns_resolver = given is None
        super().__init__(
            resolver=self.guarded_resolver, socket_factory=self.address_guard.socket, **kwargs
        )

    async def close(self, **kwargs: Any) -> None:
        # TCPConnector closes only a resolver it made itself: the default one is ours
        await super().close(**kwargs)
        if self.owns_resolver:
            await self.guarded_resolver.close()
