"""Each fleet behaviour, and each dns/tcp outcome, gives the right ok/error/timings."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from pathlib import Path

import pytest

from sitewatch.probes.checks import Checker, CheckerConfig, CheckSpec, Observation, classify
from sitewatch.probes.fleet import KEYWORD, Behaviour, Fleet, SiteScript
from sitewatch.probes.safety import is_blocked, parse_target
from sitewatch.streams.enums import CheckType, ErrorCause, ErrorKind, RedirectPolicy, Role

HTTP = [CheckType.HTTP]


async def http(checker: Checker, url: str, **kw: object) -> Observation:
    spec = CheckSpec(site_id=1, url=url, timeout_s=kw.pop("timeout_s", 2), **kw)  # type: ignore[arg-type]
    (obs,) = await checker.run(spec, HTTP)
    return obs


async def test_up_has_full_timings(checker: Checker, fleet: Fleet) -> None:
    obs = await http(checker, fleet.sites["up"].url, keyword=KEYWORD)
    assert (obs.ok, obs.error, obs.http_status) == (True, ErrorKind.NONE, 200)
    t = obs.timings
    assert t is not None and t.tcp is not None and t.ttfb is not None and t.total is not None
    assert 0 < t.tcp <= t.ttfb <= t.total
    assert t.tls is None  # plain http


@pytest.mark.parametrize(
    ("name", "ok", "error", "status", "cause"),
    [
        ("down", False, ErrorKind.CONNECT, None, ErrorCause.REFUSED),
        ("error-5xx", False, ErrorKind.HTTP_STATUS, 503, None),
        ("redirect-loop", False, ErrorKind.REDIRECT, 302, None),
        ("redirect-other-host", True, ErrorKind.NONE, 200, None),
        ("keyword-missing", False, ErrorKind.KEYWORD, 200, None),
        ("reset", False, ErrorKind.CONNECT, None, ErrorCause.RESET),
        ("false-alarm", False, ErrorKind.HTTP_STATUS, 503, None),  # primary sees it fail
        ("tls-ok", True, ErrorKind.NONE, 200, None),
        ("tls-expired", False, ErrorKind.TLS_EXPIRED, None, None),
    ],
)
async def test_behaviours(
    checker: Checker,
    fleet: Fleet,
    name: str,
    ok: bool,
    error: ErrorKind,
    status: int | None,
    cause: ErrorCause | None,
) -> None:
    obs = await http(checker, fleet.sites[name].url, keyword=KEYWORD)
    assert (obs.ok, obs.error, obs.http_status) == (ok, error, status), obs.detail
    assert obs.error_cause is cause, obs.detail
    assert obs.timings is not None and obs.timings.total is not None


def test_every_error_is_one_of_the_design_classes() -> None:
    """Consumers filter on docs/contract.md's classes: a finer cause never takes their place."""
    assert {k.value for k in ErrorKind} == {
        "none",
        "timeout",
        "connect",
        "dns",
        "ssl",
        "redirect",
        "keyword",
        "tls_expired",
        "http_status",
        "blocked_target",
        "invalid_target",
    }


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), ("connect", "refused")),
        (ConnectionResetError(errno.ECONNRESET, "reset"), ("connect", "reset")),
        (OSError(errno.EHOSTUNREACH, "no route"), ("connect", "unreachable")),
        (OSError(errno.ENETUNREACH, "network"), ("connect", "unreachable")),
        (socket.gaierror(socket.EAI_NONAME, "unknown"), ("dns", "nxdomain")),
        (TimeoutError(), ("timeout", None)),
        (RuntimeError("a bug"), ("connect", "internal")),
    ],
)
def test_refused_connection_is_class_connect_not_refused(
    exc: BaseException, failure: tuple[str, str | None]
) -> None:
    kind, cause = classify(exc)
    assert (kind.value, None if cause is None else cause.value) == failure


async def test_slow_site_times_out(checker: Checker, fleet: Fleet) -> None:
    obs = await http(checker, fleet.sites["slow"].url, timeout_s=1)
    assert (obs.ok, obs.error) == (False, ErrorKind.TIMEOUT)
    assert obs.timings is not None and obs.timings.total is not None
    assert 900 <= obs.timings.total < 3000


async def test_redirect_policies(checker: Checker, fleet: Fleet) -> None:
    url = fleet.sites["redirect-other-host"].url
    fail = await http(checker, url, redirect_policy=RedirectPolicy.FAIL)
    assert (fail.ok, fail.error, fail.http_status) == (False, ErrorKind.REDIRECT, 302)
    alert = await http(checker, url, redirect_policy=RedirectPolicy.ALERT)
    assert (alert.ok, alert.error, alert.http_status) == (True, ErrorKind.REDIRECT, 200)
    assert alert.detail is not None and "localhost" in alert.detail


async def test_flapping_alternates(checker: Checker, fleet: Fleet) -> None:
    site = await fleet.add("flap-test", SiteScript(Behaviour.FLAPPING, flap_period=1))
    seen = [(await http(checker, site.url)).ok for _ in range(4)]
    assert seen == [True, False, True, False]


async def test_take_down_and_bring_back(checker: Checker, fleet: Fleet) -> None:
    site = await fleet.add("toggle")
    assert (await http(checker, site.url)).ok
    await fleet.set("toggle", behaviour=Behaviour.DOWN)
    down = await http(checker, site.url)
    assert (down.ok, down.error, down.error_cause) == (False, ErrorKind.CONNECT, ErrorCause.REFUSED)
    await fleet.set("toggle", behaviour=Behaviour.UP)
    assert (await http(checker, site.url)).ok


async def test_fail_only_for_primary(fleet: Fleet, fleet_ca: Path) -> None:
    config = CheckerConfig(allow_private=True, extra_ca_file=str(fleet_ca), role=Role.VERIFIER)
    async with Checker(config) as verifier:
        obs = await http(verifier, fleet.sites["false-alarm"].url)
    assert obs.ok  # the verifier sees the site up: the primary's failure is a false alarm


@pytest.mark.parametrize(
    ("name", "ok", "days_min", "days_max"),
    [("tls-ok", True, 89, 91), ("tls-warning", False, 19, 21), ("tls-degraded", False, 4, 6)],
)
async def test_tls_expiry(
    checker: Checker, fleet: Fleet, name: str, ok: bool, days_min: int, days_max: int
) -> None:
    spec = CheckSpec(site_id=1, url=fleet.sites[name].url, timeout_s=2)
    http_obs, tls = await checker.run(spec, [CheckType.HTTP, CheckType.TLS_EXPIRY])
    assert http_obs.ok and http_obs.timings is not None and http_obs.timings.tls
    assert tls.check_type is CheckType.TLS_EXPIRY and tls.ok is ok
    assert tls.error is ErrorKind.NONE and tls.tls_not_after is not None
    assert tls.tls_not_after == http_obs.tls_not_after


async def test_tls_expired(checker: Checker, fleet: Fleet) -> None:
    spec = CheckSpec(site_id=1, url=fleet.sites["tls-expired"].url, timeout_s=2)
    http_obs, tls = await checker.run(spec, [CheckType.HTTP, CheckType.TLS_EXPIRY])
    assert (http_obs.ok, http_obs.error) == (False, ErrorKind.TLS_EXPIRED)
    assert (tls.ok, tls.error) == (False, ErrorKind.TLS_EXPIRED)
    assert tls.tls_not_after is not None  # read from the certificate anyway


async def test_untrusted_certificate_is_ssl_error(fleet: Fleet) -> None:
    async with Checker(CheckerConfig(allow_private=True)) as plain:  # fleet CA not trusted
        obs = await http(plain, fleet.sites["tls-ok"].url)
    assert (obs.ok, obs.error) == (False, ErrorKind.SSL)


async def test_tcp(checker: Checker, fleet: Fleet) -> None:
    spec = CheckSpec(site_id=1, url=fleet.sites["up"].url, timeout_s=2)
    (up,) = await checker.run(spec, [CheckType.TCP])
    assert up.ok and up.timings is not None and up.timings.tcp is not None
    spec = CheckSpec(site_id=1, url=fleet.sites["down"].url, timeout_s=2)
    (down,) = await checker.run(spec, [CheckType.TCP])
    assert (down.ok, down.error, down.error_cause) == (
        False,
        ErrorKind.CONNECT,
        ErrorCause.REFUSED,
    )


async def test_tcp_timeout(checker: Checker) -> None:
    # a listener whose backlog is full never completes new handshakes: connect times out
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                s = socket.socket()
                s.setblocking(False)
                fillers.append(s)
                with contextlib.suppress(BlockingIOError):
                    s.connect(("127.0.0.1", port))
            await asyncio.sleep(0.1)
            spec = CheckSpec(site_id=1, url=f"http://127.0.0.1:{port}/", timeout_s=1)
            (obs,) = await checker.run(spec, [CheckType.TCP])
        finally:
            for s in fillers:
                s.close()
    assert (obs.ok, obs.error) == (False, ErrorKind.TIMEOUT)


@pytest.mark.parametrize(
    ("host", "ok", "error", "cause"),
    [
        ("ok.test", True, ErrorKind.NONE, None),
        ("public.test", True, ErrorKind.NONE, None),
        ("missing.test", False, ErrorKind.DNS, ErrorCause.NXDOMAIN),
        ("servfail.test", False, ErrorKind.DNS, ErrorCause.SERVFAIL),
        ("refused.test", False, ErrorKind.DNS, ErrorCause.DNS_REFUSED),
        ("empty.test", False, ErrorKind.DNS, ErrorCause.NO_ADDRESS),
        ("slow.test", False, ErrorKind.TIMEOUT, None),
    ],
)
async def test_dns_rcode_is_class_dns_with_the_rcode_as_cause(
    checker: Checker, host: str, ok: bool, error: ErrorKind, cause: ErrorCause | None
) -> None:
    spec = CheckSpec(site_id=1, url=f"https://{host}/", timeout_s=1)
    (obs,) = await checker.run(spec, [CheckType.DNS])
    assert (obs.ok, obs.error, obs.error_cause) == (ok, error, cause), obs.detail
    assert obs.timings is not None and obs.timings.dns is not None


async def test_private_targets_refused_by_default(
    fleet: Fleet, fleet_ca: Path, dns_server: tuple[str, int]
) -> None:
    config = CheckerConfig(extra_ca_file=str(fleet_ca), nameservers=(dns_server,))
    url = fleet.sites["up"].url
    async with Checker(config) as guarded:
        spec = CheckSpec(site_id=1, url=url, timeout_s=2)
        observed = await guarded.run(spec, [CheckType.HTTP, CheckType.TCP, CheckType.DNS])
        # a name that resolves to loopback is refused at connect time, too
        by_name = await http(guarded, url.replace("127.0.0.1", "localhost"))
        (dns_obs,) = await guarded.run(
            CheckSpec(site_id=1, url="http://ok.test/", timeout_s=1), [CheckType.DNS]
        )
    assert [(o.ok, o.error) for o in observed] == [(False, ErrorKind.BLOCKED_TARGET)] * 3
    assert (by_name.ok, by_name.error) == (False, ErrorKind.BLOCKED_TARGET)
    assert (dns_obs.ok, dns_obs.error) == (False, ErrorKind.BLOCKED_TARGET)
    assert fleet.sites["up"].hits.get("primary", 0) >= 0  # and nothing else was asked


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
    ],
)
def test_blocked_addresses(address: str) -> None:
    assert is_blocked(address)


def test_public_addresses_allowed() -> None:
    assert not is_blocked("93.184.216.34") and not is_blocked("2606:4700::1111")


@pytest.mark.parametrize(
    ("url", "kw"),
    [
        ("ftp://example.com/", {}),
        ("not a url", {}),
        ("http://", {}),
        ("http://example.com:99999/", {}),
        ("https://example.com/", {"timeout_s": 0}),
        ("https://example.com/", {"keyword": ""}),
        ("https://example.com/", {"custom_headers": {"X-Bad": "a\r\nInjected: 1"}}),
    ],
)
async def test_invalid_targets_give_a_result(
    checker: Checker, url: str, kw: dict[str, object]
) -> None:
    spec = CheckSpec(site_id=1, url=url, **{"timeout_s": 2, **kw})  # type: ignore[arg-type]
    observed = await checker.run(spec, [CheckType.HTTP, CheckType.TCP])
    assert [(o.ok, o.error) for o in observed] == [(False, ErrorKind.INVALID_TARGET)] * 2


def test_parse_target_defaults() -> None:
    assert parse_target("https://Example.com/x").port == 443
    assert parse_target("http://example.com:8080").port == 8080
