"""The http check: one GET (and its redirects) on `http1.HttpClient`, each hop a fresh
connection, so each check measures a real DNS + TCP + TLS setup, and blocked addresses
are refused at the moment of connecting (DNS rebinding cannot slip a private address
past a check done earlier on the name)."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Final

from yarl import URL

from sitewatch.streams.enums import CheckType, ErrorCause, ErrorKind, RedirectPolicy, Role

from ..http1 import ACCEPT_ENCODING, HttpClient, Stopwatch, header_block, hop_for
from ..safety import InvalidTargetError, Target, may_send_headers, parse_target
from ._failures import classify, describe
from ._spec import CheckSpec, Observation
from ._timings import of_stopwatch

MAX_REDIRECTS: Final = 10
KEYWORD_WINDOW: Final = 1 << 20  # the keyword must appear in the first 1 MiB
ROLE_HEADER: Final = "X-Sitewatch-Role"
USER_AGENT: Final = "sitewatch-probe/0.1"


def _has_host(headers: dict[str, str] | None) -> bool:
    return any(name.lower() == "host" for name in headers or ())


def _observation(
    clock: Stopwatch,
    ok: bool,
    error: ErrorKind,
    status: int | None,
    detail: str,
    cause: ErrorCause | None = None,
) -> Observation:
    return Observation(
        CheckType.HTTP,
        ok=ok,
        error=error,
        http_status=status,
        timings=of_stopwatch(clock),
        tls_not_after=clock.not_after,
        detail=detail,
        error_cause=cause,
    )


def _headers_owner(spec: CheckSpec) -> Target | None:
    """The target whose origin may receive the custom headers (None: no headers)."""
    if not spec.custom_headers:
        return None
    try:
        return parse_target(spec.headers_url or spec.url)
    except InvalidTargetError:
        return None


def _final(
    clock: Stopwatch, spec: CheckSpec, status: int, found: bool, redirected: list[str]
) -> Observation:
    via = f"; redirected to {redirected[-1]}" if redirected else ""
    if not 1 <= status <= 399:
        return _observation(clock, False, ErrorKind.HTTP_STATUS, status, f"HTTP {status}{via}")
    if not found:
        return _observation(
            clock, False, ErrorKind.KEYWORD, status, f"keyword not in first 1 MiB{via}"
        )
    if redirected and spec.redirect_policy is RedirectPolicy.ALERT:
        # alert: the site answers, but it moved; ok follows the final status
        return _observation(clock, True, ErrorKind.REDIRECT, status, f"HTTP {status}{via}")
    return _observation(clock, True, ErrorKind.NONE, status, f"HTTP {status}{via}")


def _refused_redirect(
    spec: CheckSpec, nxt: str, visited: set[str], redirected: list[str]
) -> str | None:
    """Why the redirect to `nxt` is not followed (None: follow it)."""
    if spec.redirect_policy is RedirectPolicy.FAIL:
        return f"redirect to {nxt} (policy fail)"
    if nxt in visited:
        return f"redirect loop at {nxt}"
    if len(redirected) >= MAX_REDIRECTS:
        return f"more than {MAX_REDIRECTS} redirects"
    return None


class HttpCheck:
    """The http check of one process: its base headers and its client."""

    def __init__(self, ssl_context: ssl.SSLContext, role: Role, *, allow_private: bool) -> None:
        self._base_headers = {
            "User-Agent": USER_AGENT,
            ROLE_HEADER: role.value,
            "Accept": "*/*",
            "Accept-Encoding": ACCEPT_ENCODING,
            "Connection": "close",  # one request per connection: the server closes first
        }
        self._base_block = header_block(self._base_headers)
        self._client = HttpClient(ssl_context, allow_private=allow_private)

    async def run(self, spec: CheckSpec, target: Target) -> Observation:
        clock = Stopwatch(time.perf_counter())
        owner = _headers_owner(spec)
        keyword = spec.keyword.encode() if spec.keyword else None
        hop_target = target
        url = target.url
        visited = {url}
        redirected: list[str] = []
        try:
            async with asyncio.timeout(spec.timeout_s):
                while True:
                    hop = hop_for(url)
                    custom = owner is not None and may_send_headers(owner, hop_target)
                    headers = self._custom_block(spec) if custom else self._base_block
                    resp = await self._client.get(
                        hop,
                        headers,
                        clock,
                        keyword,
                        KEYWORD_WINDOW,
                        own_host=custom and _has_host(spec.custom_headers),
                    )
                    try:
                        clock.ttfb = time.perf_counter() - clock.start
                        status = resp.status
                        location = resp.location
                        if 300 <= status < 400 and location:
                            nxt = str(hop.url.join(URL(location)))
                            refused = _refused_redirect(spec, nxt, visited, redirected)
                            if refused is not None:
                                return _observation(
                                    clock, False, ErrorKind.REDIRECT, status, refused
                                )
                            hop_target = parse_target(nxt)  # a redirect to ftp:// is invalid
                            visited.add(nxt)
                            redirected.append(nxt)
                            url = nxt
                            continue
                        found = await resp.search() if keyword is not None else True
                        return _final(clock, spec, status, found, redirected)
                    finally:
                        resp.close()
        except Exception as exc:  # every failure is an observation, never a crash
            kind, cause = classify(exc)
            return _observation(clock, False, kind, None, describe(exc), cause)

    def _custom_block(self, spec: CheckSpec) -> bytes:
        """Base headers with the site's own on top (a same-named one, in any case, wins)."""
        custom = spec.custom_headers or {}
        names = {name.lower() for name in custom}
        merged = {k: v for k, v in self._base_headers.items() if k.lower() not in names}
        merged.update(custom)
        return header_block(merged)
