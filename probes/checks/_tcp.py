"""The tcp check: connect to host:port and close; and the vetted resolution it and the
tls_expiry fallback connect with."""

from __future__ import annotations

import asyncio
import socket
import time

from sitewatch.streams.enums import CheckType, ErrorKind
from sitewatch.streams.records import Timings

from ..safety import BlockedTargetError, Target, is_blocked
from ._failures import classify, describe
from ._spec import Observation
from ._timings import ms, since_ms


async def allowed_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve and keep only allowed addresses (BlockedTargetError if none)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        addrs = [a for a in addrs if not is_blocked(a)]
        if not addrs:
            raise BlockedTargetError(f"{host} resolves only to blocked addresses")
    return addrs


async def check_tcp(target: Target, timeout_s: float, *, allow_private: bool) -> Observation:
    """Connect to host:port and close: connect time; refused/reset/timeout apart."""
    start = time.perf_counter()
    dns_s: float | None = None
    tcp_s: float | None = None
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            addrs = await allowed_addresses(target.host, target.port, allow_private=allow_private)
            dns_s = time.perf_counter() - start
            last: Exception | None = None
            for addr in addrs:
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    t0 = time.perf_counter()
                    await loop.sock_connect(sock, (addr, target.port))
                    tcp_s = time.perf_counter() - t0
                    break
                except OSError as exc:
                    last = exc
                finally:
                    sock.close()
            if tcp_s is None:
                assert last is not None
                raise last
        ok, detail = True, f"connected to {target.host}:{target.port}"
        error, cause = ErrorKind.NONE, None
    except Exception as exc:
        ok, detail = False, describe(exc)
        error, cause = classify(exc)
    return Observation(
        CheckType.TCP,
        ok=ok,
        error=error,
        error_cause=cause,
        timings=Timings(dns=ms(dns_s), tcp=ms(tcp_s), total=since_ms(start)),
        detail=detail,
    )
