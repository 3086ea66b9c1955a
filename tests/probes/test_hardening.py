"""Issue 11, items 2 and 7 for probes and verifiers, against servers on 127.0.0.1.

Site credentials (`custom_headers`) reach only the configured origin; the address
policy is an explicit deny list; results never name the private addresses a name
resolved to; `tls_not_after` is the apex certificate's.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from sitewatch.probes.checks import Checker, CheckerConfig, CheckSpec
from sitewatch.probes.safety import is_blocked, may_send_headers, parse_target
from sitewatch.streams import records
from sitewatch.streams.enums import CheckType, ErrorKind

from . import conftest

TOKEN = "Bearer s3cr3t-t0ken"
HEADERS = {"Authorization": TOKEN}


@dataclass
class Server:
    """Records what each request carried; `routes` maps a path to a redirect target."""

    tls: ssl.SSLContext | None = None
    routes: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.host, request.path, dict(request.headers)))
        target = self.routes.get(request.path)
        if target is not None:
            raise web.HTTPFound(target)
        return web.Response(text="sitewatch-ok")

    async def start(self) -> Server:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    def auth_by_hop(self) -> list[tuple[str, str, str | None]]:
        return [(host, path, h.get("Authorization")) for host, path, h in self.seen]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_context(ca: trustme.CA, days: float) -> ssl.SSLContext:
    now = datetime.now(UTC)
    leaf = ca.issue_cert(
        "127.0.0.1",
        "localhost",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=days),
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    return ctx


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        assert s.runner is not None
        await s.runner.cleanup()


async def serve(made: list[Server], tls: ssl.SSLContext | None = None) -> Server:
    server = await Server(tls=tls).start()
    made.append(server)
    return server


@pytest.fixture
async def checker(ca: trustme.CA, tmp_path: Path) -> AsyncIterator[Checker]:
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    async with Checker(CheckerConfig(allow_private=True, extra_ca_file=str(pem))) as running:
        yield running


async def test_custom_headers_not_sent_to_other_origin(
    checker: Checker, servers: list[Server]
) -> None:
    a, b = await serve(servers), await serve(servers)
    # same server under another host name, then another port: two other origins
    a.routes["/"] = f"http://localhost:{a.port}/via-localhost"
    a.routes["/via-localhost"] = f"{b.base}/landed"
    spec = CheckSpec(site_id=1, url=f"{a.base}/", custom_headers=HEADERS)
    (obs,) = await checker.run(spec, [CheckType.HTTP])
    assert obs.ok, obs
    assert a.auth_by_hop() == [
        (f"127.0.0.1:{a.port}", "/", TOKEN),
        (f"localhost:{a.port}", "/via-localhost", None),
    ]
    assert b.auth_by_hop() == [(f"127.0.0.1:{b.port}", "/landed", None)]
    assert all(h.get("X-Sitewatch-Role") == "primary" for _, _, h in a.seen + b.seen)


async def test_custom_headers_follow_a_same_origin_redirect(
    checker: Checker, servers: list[Server]
) -> None:
    a = await serve(servers)
    a.routes["/"] = "/next"
    spec = CheckSpec(site_id=1, url=f"{a.base}/", custom_headers=HEADERS)
    await checker.run(spec, [CheckType.HTTP])
    assert [auth for _, _, auth in a.auth_by_hop()] == [TOKEN, TOKEN]


async def test_custom_headers_not_sent_over_https_downgrade(
    checker: Checker, servers: list[Server], ca: trustme.CA
) -> None:
    secure, plain = await serve(servers, tls_context(ca, 90)), await serve(servers)
    secure.routes["/"] = f"{plain.base}/"
    spec = CheckSpec(site_id=1, url=f"{secure.base}/", custom_headers=HEADERS)
    (obs,) = await checker.run(spec, [CheckType.HTTP])
    assert obs.ok, obs
    assert [a for _, _, a in secure.auth_by_hop()] == [TOKEN]
    assert [a for _, _, a in plain.auth_by_hop()] == [None]


def test_header_policy_allows_only_the_origin_and_an_https_upgrade() -> None:
    site = parse_target("http://example.com/")
    assert may_send_headers(site, parse_target("http://EXAMPLE.com:80/x"))
    assert may_send_headers(site, parse_target("https://example.com/"))  # upgrade
    assert not may_send_headers(site, parse_target("https://example.com:8443/"))
    assert not may_send_headers(site, parse_target("http://evil.example.com/"))
    secure = parse_target("https://example.com/")
    assert not may_send_headers(secure, parse_target("http://example.com/"))  # downgrade


async def test_verifier_sends_referenced_headers_only_to_the_sites_origin(
    checker: Checker, servers: list[Server]
) -> None:
    site_server, other = await serve(servers), await serve(servers)
    site = records.SiteRecord(site_id=1, url=f"{site_server.base}/", custom_headers=HEADERS)

    def request(url: str) -> records.VerifyRequest:
        return records.VerifyRequest(
            request_id="q",
            site_id=1,
            check_type=CheckType.HTTP,
            event_id="e",
            url=url,
            timeout_s=5,
            headers_ref=records.headers_ref(1),
            requested_at="2026-11-26T10:00:00.000Z",
        )

    await checker.run(
        CheckSpec.from_request(request(f"{site_server.base}/"), site), [CheckType.HTTP]
    )
    # a forged request for site 1 pointing elsewhere gets no credentials of site 1
    await checker.run(CheckSpec.from_request(request(f"{other.base}/"), site), [CheckType.HTTP])
    assert [a for _, _, a in site_server.auth_by_hop()] == [TOKEN]
    assert [a for _, _, a in other.auth_by_hop()] == [None]
    # a referenced site the verifier does not know (deleted, no headers): none sent
    spec = CheckSpec.from_request(request(f"{site_server.base}/"), None)
    assert spec.custom_headers is None


async def test_tls_not_after_is_the_apex_certificates(
    checker: Checker, servers: list[Server], ca: trustme.CA
) -> None:
    apex, www = await serve(servers, tls_context(ca, 20)), await serve(servers, tls_context(ca, 90))
    apex.routes["/"] = f"{www.base}/"
    spec = CheckSpec(site_id=1, url=f"{apex.base}/")
    http, tls = await checker.run(spec, [CheckType.HTTP, CheckType.TLS_EXPIRY])
    assert http.ok and tls.tls_not_after is not None
    days = (tls.tls_not_after - datetime.now(UTC)).total_seconds() / 86400
    assert 19 < days < 21  # the apex's 20 days, not the final hop's 90
    assert not tls.ok  # within 30 days: the lifecycle opens a warning


async def test_dns_detail_never_names_blocked_addresses(
    dns_server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(conftest.DNS_ZONE, "mixed.test.", (["10.1.2.3", "93.184.216.34"], 0))
    monkeypatch.setitem(conftest.DNS_ZONE, "inside.test.", (["10.1.2.3", "fd00::7"], 0))
    async with Checker(CheckerConfig(allow_private=False, nameservers=(dns_server,))) as c:
        (mixed,) = await c.run(CheckSpec(site_id=1, url="http://mixed.test/"), [CheckType.DNS])
        (inside,) = await c.run(CheckSpec(site_id=1, url="http://inside.test/"), [CheckType.DNS])
    assert mixed.ok and mixed.detail is not None
    assert "93.184.216.34" in mixed.detail and "10.1.2.3" not in mixed.detail
    assert inside.error is ErrorKind.BLOCKED_TARGET and inside.detail is not None
    assert "10.1.2.3" not in inside.detail and "fd00" not in inside.detail


@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.192",  # IETF protocol assignments: let through by 3.11.7's tables
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254 (metadata)
        "fec0::1",  # site-local
        "::ffff:169.254.169.254",  # mapped
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45
        "2001:0:808:808::5601:fefe",  # Teredo, client 169.254.1.1
        "::8.8.8.8",  # IPv4-compatible (deprecated)
        "100.64.0.1",
        "198.18.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "::",
        "::1",
        "fe80::1%eth0",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "169.254.169.254",
        "not an address",
    ],
)
def test_special_purpose_addresses_are_denied(address: str) -> None:
    assert is_blocked(address)


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.216.34",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2001:0:808:808::f7f7:f7f7",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_blocked(address)


def test_verifier_names_longer_than_source_allows_are_refused_at_start() -> None:
    from pydantic import ValidationError

    from sitewatch.probes.names import valid_name
    from sitewatch.settings import Settings

    assert valid_name("eu-west.1") and not valid_name("v" * 65) and not valid_name("a b")
    with pytest.raises(ValidationError, match="bad verifier name"):
        Settings(verifiers="eu," + "v" * 65)
