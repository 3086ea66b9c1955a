"""The checks themselves: http, tcp and dns. They never raise.

Every check turns what happened into an `Observation` (ok, error kind, timings, detail);
`common.to_result` turns observations into wire records. One `Checker` is shared by all
the checks of a process. The http check runs on `http1.HttpClient`: a fresh connection
per check, so each check measures a real DNS + TCP + TLS setup, and blocked addresses
are refused at the moment of connecting (DNS rebinding cannot slip a private address
past a check done earlier on the name).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
from cryptography import x509
from yarl import URL

from sitewatch import metrics
from sitewatch.streams.enums import CheckType, ErrorCause, ErrorKind, RedirectPolicy, Role
from sitewatch.streams.records import SiteRecord, Timings, VerifyRequest

from .http1 import (
    ACCEPT_ENCODING,
    HttpClient,
    HttpProtocolError,
    Stopwatch,
    header_block,
    hop_for,
)
from .safety import (
    BlockedTargetError,
    InvalidTargetError,
    Target,
    is_blocked,
    may_send_headers,
    parse_target,
)

MAX_REDIRECTS: Final = 10
KEYWORD_WINDOW: Final = 1 << 20  # the keyword must appear in the first 1 MiB
TLS_OK_DAYS: Final = 30  # tls_expiry is ok with more than this many days left
MAX_TIMEOUT_S: Final = 300
ROLE_HEADER: Final = "X-Sitewatch-Role"
USER_AGENT: Final = "sitewatch-probe/0.1"
_X509_V_ERR_CERT_HAS_EXPIRED: Final = 10


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """What to check, from a `sites` record or a verify request."""

    site_id: int
    url: str
    timeout_s: float = 10
    endpoint_id: int | None = None
    keyword: str | None = None
    redirect_policy: RedirectPolicy = RedirectPolicy.FOLLOW
    custom_headers: dict[str, str] | None = None
    #: the URL whose origin the custom headers belong to (default: `url`); no request
    #: to another origin carries them (`safety.may_send_headers`)
    headers_url: str | None = None

    @classmethod
    def from_site(cls, site: SiteRecord) -> CheckSpec:
        return cls(
            site_id=site.site_id,
            url=site.url,
            timeout_s=site.timeout_s,
            keyword=site.keyword,
            redirect_policy=site.redirect_policy,
            custom_headers=site.custom_headers,
        )

    @classmethod
    def from_request(cls, req: VerifyRequest, site: SiteRecord | None = None) -> CheckSpec:
        """A verify request's check; `site` is the site's own `sites` record, whose
        headers a request with `headers_ref` gets (for that record's origin only).
        Headers carried in the request itself (older workers) keep working, for the
        request's own origin."""
        headers: dict[str, str] | None = req.custom_headers
        headers_url: str | None = req.url
        if req.headers_ref is not None:
            headers = site.custom_headers if site is not None else None
            headers_url = site.url if site is not None else None
        return cls(
            site_id=req.site_id,
            url=req.url,
            timeout_s=req.timeout_s,
            endpoint_id=req.endpoint_id,
            keyword=req.keyword,
            redirect_policy=req.redirect_policy,
            custom_headers=headers,
            headers_url=headers_url,
        )


@dataclass(slots=True)
class Observation:
    """The outcome of one check, before it becomes a `CheckResult`."""

    check_type: CheckType
    ok: bool
    error: ErrorKind = ErrorKind.NONE
    http_status: int | None = None
    timings: Timings | None = None
    tls_not_after: datetime | None = None
    detail: str | None = None
    error_cause: ErrorCause | None = None


#: (class, finer cause) of a failure; the class alone is what consumers filter on
Failure = tuple[ErrorKind, ErrorCause | None]

_UNREACHABLE: Final = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH})
_GAI_CAUSES: Final[dict[int, ErrorCause]] = {
    socket.EAI_NONAME: ErrorCause.NXDOMAIN,
    getattr(socket, "EAI_NODATA", socket.EAI_NONAME): ErrorCause.NO_ADDRESS,
}


def _os_failure(exc: BaseException | None) -> Failure:
    if isinstance(exc, ConnectionRefusedError):
        return ErrorKind.CONNECT, ErrorCause.REFUSED
    if isinstance(exc, ConnectionResetError):
        return ErrorKind.CONNECT, ErrorCause.RESET
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT, None
    code = exc.errno if isinstance(exc, OSError) else None
    if code == errno.ECONNRESET:
        return ErrorKind.CONNECT, ErrorCause.RESET
    if code == errno.ECONNREFUSED:
        return ErrorKind.CONNECT, ErrorCause.REFUSED
    if code in _UNREACHABLE:
        return ErrorKind.CONNECT, ErrorCause.UNREACHABLE
    return ErrorKind.CONNECT, None


def _dns_failure(exc: BaseException | None) -> Failure:
    code = exc.errno if isinstance(exc, socket.gaierror) else None
    return ErrorKind.DNS, _GAI_CAUSES.get(code) if code is not None else None


def classify(exc: BaseException) -> Failure:
    """Map an exception of a check to the wire's error class and its finer cause."""
    if isinstance(exc, BlockedTargetError):
        return ErrorKind.BLOCKED_TARGET, None
    if isinstance(exc, InvalidTargetError):
        return ErrorKind.INVALID_TARGET, None
    if isinstance(exc, ssl.SSLCertVerificationError):
        expired = exc.verify_code == _X509_V_ERR_CERT_HAS_EXPIRED
        return (ErrorKind.TLS_EXPIRED if expired else ErrorKind.SSL), None
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ErrorKind.SSL, None
    if isinstance(exc, socket.gaierror):
        return _dns_failure(exc)
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT, None
    if isinstance(exc, OSError):
        return _os_failure(exc)
    if isinstance(exc, HttpProtocolError):
        return ErrorKind.CONNECT, ErrorCause.PROTOCOL  # the server spoke something else
    if isinstance(exc, ValueError | UnicodeError):
        return ErrorKind.INVALID_TARGET, None  # e.g. a URL yarl refuses, a header value
    return ErrorKind.CONNECT, ErrorCause.INTERNAL  # a bug of ours: the check could not run


def _has_host(headers: dict[str, str] | None) -> bool:
    return any(name.lower() == "host" for name in headers or ())


def _ms(seconds: float | None) -> float | None:
    # round() to the microsecond, then scale: round(x, 3) is several times slower
    return None if seconds is None else round(seconds * 1_000_000) / 1000


def _timings(clock: Stopwatch) -> Timings:
    total = time.perf_counter() - clock.start
    return Timings(
        dns=_ms(clock.dns),
        tcp=_ms(clock.tcp),
        tls=_ms(clock.tls),
        ttfb=_ms(clock.ttfb),
        total=_ms(total),
    )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def parse_nameserver(text: str) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def _system_nameservers() -> list[tuple[str, int]]:
    try:
        return [(str(ns), 53) for ns in dns.resolver.Resolver().nameservers]
    except (dns.resolver.NoResolverConfiguration, OSError):
        return []


@dataclass(frozen=True, slots=True)
class CheckerConfig:
    allow_private: bool = False
    extra_ca_file: str | None = None
    nameservers: tuple[tuple[str, int], ...] = ()  # empty = /etc/resolv.conf
    role: Role = Role.PRIMARY


class Checker:
    """Runs checks; one per process, `start()`ed inside the event loop."""

    def __init__(self, config: CheckerConfig) -> None:
        self.config = config
        self._ssl = ssl.create_default_context()
        if config.extra_ca_file:
            self._ssl.load_verify_locations(cafile=config.extra_ca_file)
        self._nameservers = list(config.nameservers) or _system_nameservers()
        self._base_headers = {
            "User-Agent": USER_AGENT,
            ROLE_HEADER: config.role.value,
            "Accept": "*/*",
            "Accept-Encoding": ACCEPT_ENCODING,
            "Connection": "close",  # one request per connection: the server closes first
        }
        self._base_block = header_block(self._base_headers)
        self._client = HttpClient(self._ssl, allow_private=config.allow_private)

    async def start(self) -> None:
        """Nothing to open: every check makes its own connection (kept for symmetry)."""

    async def close(self) -> None:
        """Nothing to close: no connection outlives its check."""

    async def __aenter__(self) -> Checker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- entry point -------------------------------------------------------------------

    async def run(self, spec: CheckSpec, checks: Iterable[CheckType]) -> list[Observation]:
        """Run `checks` for `spec`; one observation per check (tls_expiry: https only)."""
        observations = await self._run(spec, checks)
        metrics.observe_checks(observations)
        return observations

    async def _run(self, spec: CheckSpec, checks: Iterable[CheckType]) -> list[Observation]:
        wanted = list(dict.fromkeys(checks))
        try:
            target = self.validate(spec)
        except InvalidTargetError as exc:
            return [
                Observation(c, ok=False, error=ErrorKind.INVALID_TARGET, detail=str(exc))
                for c in wanted
            ]
        jobs: list[Coroutine[Any, Any, list[Observation]]] = []
        if CheckType.HTTP in wanted or (CheckType.TLS_EXPIRY in wanted and target.is_https):
            jobs.append(self._http_and_tls(spec, target, wanted))
        if CheckType.TCP in wanted:
            jobs.append(self._one(self.tcp(target, spec.timeout_s)))
        if CheckType.DNS in wanted:
            jobs.append(self._one(self.dns(target, spec.timeout_s)))
        if len(jobs) == 1:
            return await jobs[0]  # the common case: no extra task per check
        out: list[Observation] = []
        for part in await asyncio.gather(*jobs):
            out.extend(part)
        return out

    @staticmethod
    async def _one(coro: Any) -> list[Observation]:
        return [await coro]

    @staticmethod
    def validate(spec: CheckSpec) -> Target:
        target = parse_target(spec.url)
        if not 0 < spec.timeout_s <= MAX_TIMEOUT_S:
            raise InvalidTargetError(f"timeout_s must be in (0, {MAX_TIMEOUT_S}]")
        if spec.keyword is not None and not spec.keyword:
            raise InvalidTargetError("keyword is empty")
        for name, value in (spec.custom_headers or {}).items():
            if not name or any(c in name + value for c in "\r\n\0") or ":" in name:
                raise InvalidTargetError(f"invalid custom header {name!r}")
        return target

    async def _http_and_tls(
        self, spec: CheckSpec, target: Target, wanted: list[CheckType]
    ) -> list[Observation]:
        obs = await self.http(spec, target)
        out = [obs] if CheckType.HTTP in wanted else []
        if CheckType.TLS_EXPIRY in wanted and target.is_https:
            tls = await self._tls_expiry(obs, target, spec.timeout_s)
            if tls is not None:
                out.append(tls)
        return out

    # -- http --------------------------------------------------------------------------

    async def http(self, spec: CheckSpec, target: Target) -> Observation:
        clock = Stopwatch(time.perf_counter())
        owner = self._headers_owner(spec)
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
                            if spec.redirect_policy is RedirectPolicy.FAIL:
                                return self._http_obs(
                                    clock,
                                    False,
                                    ErrorKind.REDIRECT,
                                    status,
                                    f"redirect to {nxt} (policy fail)",
                                )
                            if nxt in visited:
                                return self._http_obs(
                                    clock,
                                    False,
                                    ErrorKind.REDIRECT,
                                    status,
                                    f"redirect loop at {nxt}",
                                )
                            if len(redirected) >= MAX_REDIRECTS:
                                return self._http_obs(
                                    clock,
                                    False,
                                    ErrorKind.REDIRECT,
                                    status,
                                    f"more than {MAX_REDIRECTS} redirects",
                                )
                            hop_target = parse_target(nxt)  # a redirect to ftp:// is invalid
                            visited.add(nxt)
                            redirected.append(nxt)
                            url = nxt
                            continue
                        found = await resp.search() if keyword is not None else True
                        return self._final(clock, spec, status, found, redirected)
                    finally:
                        resp.close()
        except Exception as exc:  # every failure is an observation, never a crash
            kind, cause = classify(exc)
            return self._http_obs(clock, False, kind, None, _describe(exc), cause)

    def _custom_block(self, spec: CheckSpec) -> bytes:
        """Base headers with the site's own on top (a same-named one, in any case, wins)."""
        custom = spec.custom_headers or {}
        names = {name.lower() for name in custom}
        merged = {k: v for k, v in self._base_headers.items() if k.lower() not in names}
        merged.update(custom)
        return header_block(merged)

    @staticmethod
    def _headers_owner(spec: CheckSpec) -> Target | None:
        """The target whose origin may receive the custom headers (None: no headers)."""
        if not spec.custom_headers:
            return None
        try:
            return parse_target(spec.headers_url or spec.url)
        except InvalidTargetError:
            return None

    def _final(
        self, clock: Stopwatch, spec: CheckSpec, status: int, found: bool, redirected: list[str]
    ) -> Observation:
        via = f"; redirected to {redirected[-1]}" if redirected else ""
        if not 1 <= status <= 399:
            return self._http_obs(
                clock, False, ErrorKind.HTTP_STATUS, status, f"HTTP {status}{via}"
            )
        if not found:
            return self._http_obs(
                clock, False, ErrorKind.KEYWORD, status, f"keyword not in first 1 MiB{via}"
            )
        if redirected and spec.redirect_policy is RedirectPolicy.ALERT:
            # alert: the site answers, but it moved; ok follows the final status
            return self._http_obs(clock, True, ErrorKind.REDIRECT, status, f"HTTP {status}{via}")
        return self._http_obs(clock, True, ErrorKind.NONE, status, f"HTTP {status}{via}")

    @staticmethod
    def _http_obs(
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
            timings=_timings(clock),
            tls_not_after=clock.not_after,
            detail=detail,
            error_cause=cause,
        )

    # -- tls_expiry --------------------------------------------------------------------

    async def _tls_expiry(
        self, http: Observation, target: Target, timeout_s: float
    ) -> Observation | None:
        """From the http check's certificate; None when no certificate was seen."""
        not_after = http.tls_not_after
        if http.error is ErrorKind.TLS_EXPIRED:
            not_after = await self._fetch_not_after(target, timeout_s)
            return Observation(
                CheckType.TLS_EXPIRY,
                ok=False,
                error=ErrorKind.TLS_EXPIRED,
                tls_not_after=not_after,
                detail="certificate expired",
            )
        if not_after is None:
            return None  # no handshake happened (refused, blocked...): http says why
        days = (not_after - datetime.now(UTC)).total_seconds() / 86400
        return Observation(
            CheckType.TLS_EXPIRY,
            ok=days > TLS_OK_DAYS,
            tls_not_after=not_after,
            detail=f"certificate expires in {days:.1f} days",
        )

    async def _fetch_not_after(self, target: Target, timeout_s: float) -> datetime | None:
        """Read an expired certificate (verification would refuse it) for its date."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            async with asyncio.timeout(timeout_s):
                addrs = await self._addresses(target.host, target.port)
                _, writer = await asyncio.open_connection(
                    addrs[0], target.port, ssl=ctx, server_hostname=target.host
                )
                try:
                    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                finally:
                    writer.close()
            return x509.load_der_x509_certificate(der).not_valid_after_utc
        except Exception:
            return None

    # -- tcp ---------------------------------------------------------------------------

    async def _addresses(self, host: str, port: int) -> list[str]:
        """Resolve and keep only allowed addresses (BlockedTargetError if none)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self.config.allow_private:
            addrs = [a for a in addrs if not is_blocked(a)]
            if not addrs:
                raise BlockedTargetError(f"{host} resolves only to blocked addresses")
        return addrs

    async def tcp(self, target: Target, timeout_s: float) -> Observation:
        """Connect to host:port and close: connect time; refused/reset/timeout apart."""
        start = time.perf_counter()
        dns_s: float | None = None
        tcp_s: float | None = None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                addrs = await self._addresses(target.host, target.port)
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
            ok, detail = False, _describe(exc)
            error, cause = classify(exc)
        return Observation(
            CheckType.TCP,
            ok=ok,
            error=error,
            error_cause=cause,
            timings=Timings(
                dns=None if dns_s is None else round(dns_s * 1000, 3),
                tcp=None if tcp_s is None else round(tcp_s * 1000, 3),
                total=round((time.perf_counter() - start) * 1000, 3),
            ),
            detail=detail,
        )

    # -- dns ---------------------------------------------------------------------------

    async def dns(self, target: Target, timeout_s: float) -> Observation:
        """A and AAAA for the URL's host; NXDOMAIN/SERVFAIL/REFUSED/timeout told apart."""
        start = time.perf_counter()

        def obs(
            ok: bool, error: ErrorKind, detail: str, cause: ErrorCause | None = None
        ) -> Observation:
            total = round((time.perf_counter() - start) * 1000, 3)
            return Observation(
                CheckType.DNS,
                ok=ok,
                error=error,
                timings=Timings(dns=total, total=total),
                detail=detail,
                error_cause=cause,
            )

        try:
            import ipaddress

            ipaddress.ip_address(target.host)
            if not self.config.allow_private and is_blocked(target.host):
                return obs(False, ErrorKind.BLOCKED_TARGET, f"{target.host} is blocked")
            return obs(True, ErrorKind.NONE, "IP literal: nothing to resolve")
        except ValueError:
            pass
        if not self._nameservers:
            return obs(False, ErrorKind.DNS, "no nameserver configured", ErrorCause.NO_NAMESERVER)
        try:
            qname = dns.name.from_text(target.host)
        except dns.exception.DNSException as exc:
            return obs(False, ErrorKind.INVALID_TARGET, _describe(exc))
        deadline = time.perf_counter() + timeout_s
        per_server = timeout_s / len(self._nameservers)
        last_error = "no answer"
        refused = 0  # nameservers that answered with ICMP port unreachable
        for host, port in self._nameservers:
            budget = min(per_server, deadline - time.perf_counter())
            if budget <= 0:
                break
            try:
                answers = await asyncio.gather(
                    *(
                        dns.asyncquery.udp_with_fallback(
                            dns.message.make_query(qname, rdtype), host, timeout=budget, port=port
                        )
                        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
                    )
                )
            except dns.exception.Timeout:
                last_error = f"nameserver {host}:{port} timed out"
                continue
            except (OSError, dns.exception.DNSException) as exc:
                last_error = _describe(exc)
                if isinstance(exc, ConnectionRefusedError):
                    refused += 1
                    continue  # ICMP port unreachable: try the next server
                return obs(False, ErrorKind.DNS, last_error)
            rcodes = {response.rcode() for response, _tcp in answers}
            for rcode, cause in (
                (dns.rcode.NXDOMAIN, ErrorCause.NXDOMAIN),
                (dns.rcode.SERVFAIL, ErrorCause.SERVFAIL),
                (dns.rcode.REFUSED, ErrorCause.DNS_REFUSED),
            ):
                if rcode in rcodes:
                    text = f"{target.host}: {dns.rcode.to_text(rcode)}"
                    return obs(False, ErrorKind.DNS, text, cause)
            if rcodes != {dns.rcode.NOERROR}:
                text = ",".join(dns.rcode.to_text(r) for r in rcodes)
                return obs(False, ErrorKind.DNS, f"{target.host}: {text}", ErrorCause.RCODE)
            addrs = [
                str(rdata.address)
                for response, _tcp in answers
                for rrset in response.answer
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
                for rdata in rrset
            ]
            if not addrs:
                text = f"{target.host}: no A/AAAA records"
                return obs(False, ErrorKind.DNS, text, ErrorCause.NO_ADDRESS)
            if not self.config.allow_private:
                # blocked addresses are counted, never named: a result must not map
                # private networks for whoever reads check-results
                public = [a for a in addrs if not is_blocked(a)]
                if not public:
                    return obs(
                        False,
                        ErrorKind.BLOCKED_TARGET,
                        f"{target.host}: all {len(addrs)} addresses blocked",
                    )
                hidden = len(addrs) - len(public)
                more = f" (+{hidden} blocked)" if hidden else ""
                return obs(True, ErrorKind.NONE, f"{target.host} -> {', '.join(public[:8])}{more}")
            return obs(True, ErrorKind.NONE, f"{target.host} -> {', '.join(addrs[:8])}")
        if refused == len(self._nameservers):
            return obs(False, ErrorKind.DNS, last_error, ErrorCause.NO_NAMESERVER)
        return obs(False, ErrorKind.TIMEOUT, last_error)
