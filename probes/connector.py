"""The address guard as an aiohttp connector: what the notifier connects through.

The probes' http check has its own client (`http1.py`); webhooks go through aiohttp,
and this connector refuses blocked addresses at the moment of connecting, the same
deny list as the checks (DNS rebinding cannot slip a private address past a check made
earlier on the name).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohappyeyeballs
import aiohttp
from aiohttp.client_exceptions import cert_errors, ssl_errors
from aiohttp.helpers import ceil_timeout

from .safety import BlockedTargetError, is_blocked


class GuardedConnector(aiohttp.TCPConnector):
    """TCPConnector that vets the address it connects to.

    Mirrors aiohttp's `_wrap_create_connection` (3.11+) with the guard before the
    connect and again on the connected socket's peer address.
    """

    def __init__(self, *, allow_private: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._allow_private = allow_private

    async def _wrap_create_connection(  # type: ignore[override]
        self,
        *args: Any,
        addr_infos: list[aiohappyeyeballs.AddrInfoType],
        req: aiohttp.ClientRequest,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp signature
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, aiohttp.client_proto.ResponseHandler]:
        if not self._allow_private:
            addr_infos = [ai for ai in addr_infos if not is_blocked(str(ai[4][0]))]
            if not addr_infos:
                raise BlockedTargetError(f"{req.url.host} resolves only to blocked addresses")
        try:
            async with ceil_timeout(timeout.sock_connect, ceil_threshold=timeout.ceil_threshold):
                sock = await aiohappyeyeballs.start_connection(
                    addr_infos=addr_infos,
                    local_addr_infos=self._local_addr_infos,
                    happy_eyeballs_delay=self._happy_eyeballs_delay,
                    interleave=self._interleave,
                    loop=self._loop,
                )
                if not self._allow_private and is_blocked(str(sock.getpeername()[0])):
                    sock.close()  # belt and braces: the address actually connected
                    raise BlockedTargetError(f"{req.url.host} connected to a blocked address")
                transport, proto = await self._loop.create_connection(*args, **kwargs, sock=sock)
                return transport, proto  # type: ignore[return-value]
        except cert_errors as exc:
            raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
        except ssl_errors as exc:
            raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc
        except OSError as exc:
            if exc.errno is None and isinstance(exc, asyncio.TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc
