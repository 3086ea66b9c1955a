"""The lean http client (`probes/http1.py`) against raw, scripted answers on 127.0.0.1.

The fleet covers the behaviours of real servers; these pin what a hand-written client
must get right on its own: body framing (length, chunked, until close), compressed
bodies, the 1 MiB keyword window across reads, informational answers, a cut body,
something that is not HTTP, and the request it sends.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sitewatch.probes.checks import Checker, CheckerConfig, CheckSpec, Observation
from sitewatch.streams.enums import CheckType, ErrorCause, ErrorKind

KEYWORD = "sitewatch-ok"
Reply = Callable[[bytes], list[bytes]]  # request head -> chunks to send, then close


class RawServer:
    """Answers each connection with the chunks `reply` gives, then closes it."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            for chunk in self.reply(head):
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.01)  # separate reads on the client's side
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/page?q=1"


Serve = Callable[[Reply], Awaitable[RawServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    started: list[RawServer] = []

    async def start(reply: Reply) -> RawServer:
        raw = RawServer(reply)
        raw.server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
        started.append(raw)
        return raw

    yield start
    for raw in started:
        assert raw.server is not None
        raw.server.close()


@pytest.fixture
async def checker() -> AsyncIterator[Checker]:
    async with Checker(CheckerConfig(allow_private=True)) as running:
        yield running


async def check(checker: Checker, url: str, **kw: object) -> Observation:
    kw.setdefault("keyword", KEYWORD)
    spec = CheckSpec(site_id=1, url=url, timeout_s=2, **kw)  # type: ignore[arg-type]
    (obs,) = await checker.run(spec, [CheckType.HTTP])
    return obs


def head(status: str = "200 OK", *extra: str) -> bytes:
    return ("HTTP/1.1 " + status + "\r\n" + "".join(h + "\r\n" for h in extra) + "\r\n").encode()


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def test_request_is_one_get_with_host_and_close(serve: Serve, checker: Checker) -> None:
    body = KEYWORD.encode()
    raw = await serve(lambda _: [head("200 OK", f"Content-Length: {len(body)}") + body])
    obs = await check(checker, raw.url)
    assert obs.ok, obs.detail
    (request,) = raw.requests
    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /page?q=1 HTTP/1.1"
    names = [line.split(":", 1)[0].lower() for line in lines[1:] if line]
    assert names.count("host") == 1 and "connection: close" in request.decode().lower()
    assert "x-sitewatch-role: primary" in request.decode().lower()


async def test_a_sites_own_host_header_replaces_ours(serve: Serve, checker: Checker) -> None:
    raw = await serve(lambda _: [head("204 No Content")])
    obs = await check(checker, raw.url, keyword=None, custom_headers={"host": "example.test"})
    assert obs.ok, obs.detail
    (request,) = raw.requests
    hosts = [line for line in request.decode().split("\r\n") if line.lower().startswith("host:")]
    assert hosts == ["host: example.test"]


@pytest.mark.parametrize(
    "framing",
    ["length", "chunked", "until_close"],
)
async def test_keyword_found_whatever_the_framing(
    serve: Serve, checker: Checker, framing: str
) -> None:
    body = b"x" * 5000 + KEYWORD.encode() + b"y" * 100
    replies = {
        # the keyword split across two reads
        "length": [head("200 OK", f"Content-Length: {len(body)}") + body[:5005], body[5005:]],
        "chunked": [
            head("200 OK", "Transfer-Encoding: chunked") + chunked(body[:5004], body[5004:])
        ],
        "until_close": [head("200 OK"), body[:5003], body[5003:]],
    }
    raw = await serve(lambda _: replies[framing])
    obs = await check(checker, raw.url)
    assert (obs.ok, obs.error, obs.http_status) == (True, ErrorKind.NONE, 200), obs.detail


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_body_is_searched_decompressed(
    serve: Serve,
    checker: Checker,
    encoding: str,
) -> None:
    body = b"<html>" + KEYWORD.encode() * 3 + b"</html>"
    packed = {
        "gzip": gzip.compress(body),
        "deflate": zlib.compress(body),
        "raw-deflate": zlib.compress(body, wbits=-15),  # what some servers send
    }[encoding]
    name = "deflate" if encoding == "raw-deflate" else encoding
    raw = await serve(
        lambda _: [
            head("200 OK", f"Content-Encoding: {name}", f"Content-Length: {len(packed)}") + packed
        ]
    )
    obs = await check(checker, raw.url)
    assert obs.ok, obs.detail
    assert b"accept-encoding: gzip, deflate" in raw.requests[0].lower()


async def test_keyword_past_the_first_mib_is_missing(serve: Serve, checker: Checker) -> None:
    window = 1 << 20
    body = b"a" * (window - 4) + KEYWORD.encode()  # starts inside, ends outside the window
    raw = await serve(lambda _: [head("200 OK", f"Content-Length: {len(body)}"), body])
    obs = await check(checker, raw.url)
    assert (obs.ok, obs.error) == (False, ErrorKind.KEYWORD), obs.detail
    inside = b"a" * (window - len(KEYWORD)) + KEYWORD.encode() + b"b" * 1000
    raw = await serve(lambda _: [head("200 OK", f"Content-Length: {len(inside)}"), inside])
    assert (await check(checker, raw.url)).ok


async def test_informational_answer_is_skipped(serve: Serve, checker: Checker) -> None:
    body = KEYWORD.encode()
    raw = await serve(
        lambda _: [head("100 Continue"), head("200 OK", f"Content-Length: {len(body)}") + body]
    )
    obs = await check(checker, raw.url)
    assert (obs.ok, obs.http_status) == (True, 200), obs.detail


async def test_body_cut_short_is_a_protocol_failure(serve: Serve, checker: Checker) -> None:
    raw = await serve(lambda _: [head("200 OK", "Content-Length: 1000") + b"only this"])
    obs = await check(checker, raw.url)
    assert (obs.ok, obs.error, obs.error_cause) == (False, ErrorKind.CONNECT, ErrorCause.PROTOCOL)


async def test_not_http_is_a_protocol_failure(serve: Serve, checker: Checker) -> None:
    raw = await serve(lambda _: [b"SSH-2.0-OpenSSH_9.2\r\n"])
    obs = await check(checker, raw.url)
    assert (obs.ok, obs.error, obs.error_cause) == (False, ErrorKind.CONNECT, ErrorCause.PROTOCOL)


async def test_closed_before_answering_is_a_reset(serve: Serve, checker: Checker) -> None:
    raw = await serve(lambda _: [])
    obs = await check(checker, raw.url)
    assert (obs.ok, obs.error, obs.error_cause) == (False, ErrorKind.CONNECT, ErrorCause.RESET)


async def test_relative_redirect_is_followed_on_a_new_connection(
    serve: Serve, checker: Checker
) -> None:
    body = KEYWORD.encode()

    def reply(request: bytes) -> list[bytes]:
        if request.startswith(b"GET /page"):
            return [head("301 Moved", "Location: /landed", "Content-Length: 0")]
        return [head("200 OK", f"Content-Length: {len(body)}") + body]

    raw = await serve(reply)
    obs = await check(checker, raw.url)
    assert (obs.ok, obs.http_status) == (True, 200), obs.detail
    assert obs.detail is not None and obs.detail.endswith("/landed")
    assert [r.split(b"\r\n")[0] for r in raw.requests] == [
        b"GET /page?q=1 HTTP/1.1",
        b"GET /landed HTTP/1.1",
    ]
    t = obs.timings
    assert t is not None and t.tcp is not None and t.ttfb is not None and t.total is not None
