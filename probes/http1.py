"""A lean HTTP/1.1 client for the http check: one GET on a fresh connection.

Why not aiohttp here (issue 16): profiled, aiohttp's per-request machinery (session,
connector, request and response objects, tracing, its stream reader) was most of the
probe's CPU per check, while a check needs little of it. This module does only that:
resolve (timed), vet the addresses, connect (timed), TLS handshake (timed, the
certificate kept for `tls_expiry`), send one GET with `Connection: close`, parse the
answer with httptools (llhttp, Node.js's parser) and read the body only as far as the
keyword search needs. Every failure is an exception `checks.classify` knows.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import aiohappyeyeballs
import httptools
from yarl import URL

from .safety import BlockedTargetError, is_blocked

#: like aiohttp: with several addresses, the next one is tried after 250 ms
HAPPY_EYEBALLS_DELAY: Final = 0.25
ACCEPT_ENCODING: Final = "gzip, deflate"  # what aiohttp asked for (no brotli installed)
AddrInfo = aiohappyeyeballs.AddrInfoType
_NO_BODY_STATUS: Final = frozenset({204, 304})


class HttpProtocolError(Exception):
    """The server answered something that is not HTTP/1.x, or cut its body short."""


class ServerDisconnectedError(ConnectionResetError):
    """The server closed the connection before a complete response head."""


@dataclass(slots=True)
class Stopwatch:
    """One check's timings in seconds; summed over redirect hops (each a new connection)."""

    start: float
    dns: float | None = None
    tcp: float | None = None
    tls: float | None = None
    ttfb: float | None = None
    not_after: datetime | None = None  # the first hop's certificate: the apex's


@dataclass(frozen=True, slots=True)
class Hop:
    """What a request to one URL needs, computed once per URL (`hop_for` caches it)."""

    url: URL
    host: str  # to resolve and connect to: IDNA, IPv6 without brackets
    sni: str  # the name the certificate must match (no trailing dot)
    port: int
    https: bool
    ip: bool  # an IP literal: nothing to resolve
    literal: tuple[AddrInfo, ...]  # its address, when `ip`
    head: bytes  # the request line, Host and (from user:password in the URL) Authorization
    head_own_host: bytes  # the same without Host, for a site that sends its own


@lru_cache(maxsize=1 << 16)
def hop_for(url: str) -> Hop:
    """Parse `url` for a request (raises ValueError for what yarl refuses)."""
    u = URL(url)
    host = u.raw_host or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        ip = True
    except ValueError:
        ip = False
    line = f"GET {u.raw_path_qs or '/'} HTTP/1.1\r\n".encode("ascii")
    auth = b""
    if u.raw_user:
        token = f"{u.user or ''}:{u.password or ''}".encode()
        auth = b"Authorization: Basic " + base64.b64encode(token) + b"\r\n"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    port = u.port or (443 if u.scheme == "https" else 80)
    return Hop(
        url=u,
        host=host,
        sni=host.rstrip("."),
        port=port,
        https=u.scheme == "https",
        ip=ip,
        literal=((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port)),) if ip else (),
        head=line + f"Host: {u.host_port_subcomponent}\r\n".encode("ascii") + auth,
        head_own_host=line + auth,
    )


def header_block(headers: dict[str, str]) -> bytes:
    """The header lines after Host, ending the head (values were checked: no CR/LF/NUL)."""
    lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
    return "".join(lines).encode("utf-8") + b"\r\n"


def _not_after_of(peercert: Any) -> datetime | None:
    if isinstance(peercert, dict) and "notAfter" in peercert:
        return datetime.fromtimestamp(ssl.cert_time_to_seconds(peercert["notAfter"]), UTC)
    return None


class Response(asyncio.Protocol):
    """One exchange: the protocol of its connection and, once the head is in, the answer.

    The body is fed straight into the keyword search (decompressed when the server
    compressed it), so nothing past the keyword, or past the window, is kept.
    """

    __slots__ = (
        "_carry",
        "_complete",
        "_decoder",
        "_error",
        "_framed",
        "_head",
        "_keyword",
        "_loop",
        "_parser",
        "_room",
        "_searching",
        "_waiter",
        "found",
        "location",
        "status",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, keyword: bytes | None, window: int):
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._head = False
        self._complete = False
        self._framed = False  # a length or chunks: an early EOF is a truncated body
        self._keyword = keyword
        self._searching = keyword is not None
        self._room = window  # body bytes still to search
        self._carry = b""  # the end of what was searched, for a keyword split across reads
        self._decoder: Any = None
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.location: str | None = None
        self.found = False

    # -- what the check calls -------------------------------------------------------------

    async def head(self) -> None:
        """Wait for the final response's status line and headers."""
        while not self._head and self._error is None:
            await self._wait()
        if self._error is not None:
            raise self._error

    async def search(self) -> bool:
        """Read the body until the keyword shows up, the window is read, or it ends."""
        while self._searching and self._error is None:
            await self._wait()
        if self._searching and self._error is not None:
            raise self._error
        return self.found

    def close(self) -> None:
        self._parser = None  # type: ignore[assignment]  # it holds us: no cycle for the GC
        if self.transport is not None:
            self.transport.abort()  # one request per connection: nothing to wait for

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._wake()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._complete or self._error is not None:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._done_searching()  # 101 Switching Protocols: nothing more to read
        except httptools.HttpParserError as exc:
            self._fail(HttpProtocolError(f"invalid HTTP response: {exc}"))
        except zlib.error as exc:
            self._fail(HttpProtocolError(f"cannot decompress the body: {exc}"))

    def eof_received(self) -> bool | None:
        return False  # close the transport: connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._head:
            self._fail(exc or ServerDisconnectedError("server closed the connection"))
        elif self._searching:
            if exc is None and not self._framed:
                self._done_searching()  # a body delimited by the end of the connection
            else:
                self._fail(exc or HttpProtocolError("response payload is not completed"))

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"location":
            if self.location is None:  # the first, as aiohttp's headers.get() had it
                self.location = value.decode("utf-8", "surrogateescape")
        elif lower == b"content-encoding":
            self._decoder = _decoder_for(value.strip().lower())
        elif lower in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # informational: the answer follows
            self.location, self._decoder, self._framed = None, None, False
            return
        self.status = status
        if status in _NO_BODY_STATUS:
            self._framed = True
        self._head = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if not self._searching:
            return
        if self._decoder is not None:
            body = self._decoder.decompress(body, self._room)
        assert self._keyword is not None
        chunk = body[: self._room]
        self._room -= len(chunk)
        text = self._carry + chunk
        if self._keyword in text:
            self.found = True
            self._done_searching()
            return
        self._carry = text[-(len(self._keyword) - 1) :] if len(self._keyword) > 1 else b""
        if self._room <= 0:
            self._done_searching()

    def on_message_complete(self) -> None:
        if self._head:
            self._complete = True
            self._done_searching()

    def _done_searching(self) -> None:
        self._searching = False
        self._wake()


def _decoder_for(encoding: bytes) -> Any:
    if encoding in (b"gzip", b"x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == b"deflate":
        return _Deflate()
    return None  # identity, or one we never asked for: searched as sent


class _Deflate:
    """`deflate` is zlib-wrapped by the RFC and raw by some servers: accept both."""

    def __init__(self) -> None:
        self._obj: Any = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._obj is None:
            raw = not data or (data[0] & 0x0F) != 8  # no zlib header (CM=8)
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        out: bytes = self._obj.decompress(data, max_length)
        return out


class HttpClient:
    """Opens one connection per request; shared by every check of a process."""

    def __init__(self, ssl_context: ssl.SSLContext, *, allow_private: bool) -> None:
        self._ssl = ssl_context
        self._allow_private = allow_private

    async def get(
        self,
        hop: Hop,
        headers: bytes,
        clock: Stopwatch,
        keyword: bytes | None,
        window: int,
        *,
        own_host: bool = False,
    ) -> Response:
        """Send the GET and return once the response head is in (the caller closes it).

        `headers` are the header lines after Host (`header_block`; with `own_host` they
        carry a Host of their own); with `keyword`, the body is searched as it arrives
        (`Response.search`).
        """
        loop = asyncio.get_running_loop()
        # an IP literal needs no resolver (and no coroutine)
        infos = self._vet(hop, hop.literal if hop.ip else await self._resolve(loop, hop, clock))
        resp = Response(loop, keyword, window)
        transport = await self._connect(loop, hop, infos, resp, clock)
        try:
            if hop.https:
                started = time.perf_counter()
                tls = await loop.start_tls(transport, resp, self._ssl, server_hostname=hop.sni)
                if tls is None:
                    raise ssl.SSLError("TLS handshake gave no transport")
                transport = tls
                clock.tls = (clock.tls or 0.0) + time.perf_counter() - started
                if clock.not_after is None:
                    clock.not_after = _not_after_of(transport.get_extra_info("peercert"))
            resp.transport = transport
            transport.write((hop.head_own_host if own_host else hop.head) + headers)
            await resp.head()
        except BaseException:
            transport.abort()
            raise
        return resp

    async def _resolve(
        self, loop: asyncio.AbstractEventLoop, hop: Hop, clock: Stopwatch
    ) -> list[AddrInfo]:
        started = time.perf_counter()
        found = await loop.getaddrinfo(
            hop.host, hop.port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
        )
        clock.dns = (clock.dns or 0.0) + time.perf_counter() - started
        seen: set[Any] = set()
        infos: list[AddrInfo] = []
        for info in found:
            if info[4] not in seen:
                seen.add(info[4])
                infos.append(info)
        return infos

    def _vet(self, hop: Hop, infos: Sequence[AddrInfo]) -> Sequence[AddrInfo]:
        if self._allow_private:
            return infos
        allowed = [ai for ai in infos if not is_blocked(str(ai[4][0]))]
        if not allowed:
            raise BlockedTargetError(f"{hop.host} resolves only to blocked addresses")
        return allowed

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        hop: Hop,
        infos: Sequence[AddrInfo],
        resp: Response,
        clock: Stopwatch,
    ) -> asyncio.Transport:
        started = time.perf_counter()
        if len(infos) == 1:  # the common case, on the loop's own connect
            address = infos[0][4]
            transport, _ = await loop.create_connection(lambda: resp, address[0], address[1])
        else:
            sock = await aiohappyeyeballs.start_connection(
                list(infos), happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1, loop=loop
            )
            transport, _ = await loop.create_connection(lambda: resp, sock=sock)
        clock.tcp = (clock.tcp or 0.0) + time.perf_counter() - started
        if not self._allow_private:
            # belt and braces: the address actually connected (not named in the result:
            # results must not map private networks for whoever reads them)
            peer = transport.get_extra_info("peername")
            if not peer or is_blocked(str(peer[0])):
                transport.abort()
                raise BlockedTargetError(f"{hop.host} connected to a blocked address")
        return transport
