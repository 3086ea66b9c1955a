"""A fleet of local demo sites on 127.0.0.1 with scripted, changeable behaviours
(`sitewatch fleet` serves the demo set: `sitewatch.commands.fleet`).

Used by the tests, the demo and the benchmark. Every site has a listening port of its
own (so `down` can really refuse connections, and come back on the same port), all
served by one aiohttp application that looks up the site by the local port.

Behaviours change at run time through the Python API (`await fleet.set(name, ...)`)
or the admin endpoint (`PUT /sites/<name>` with a JSON object of `SiteScript` fields).
`only_role` applies a behaviour to one role only (the probes send `X-Sitewatch-Role`),
so a site can fail for the primary probe while verifiers see it up: a false alarm.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import ssl
import struct
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from sitewatch.streams.enums import Role

from .checks import ROLE_HEADER

KEYWORD = "sitewatch-ok"  # in every healthy page; `keyword_missing` leaves it out


class Behaviour(enum.StrEnum):
    UP = "up"
    DOWN = "down"  # nothing listening: connection refused
    ERROR_5XX = "5xx"
    SLOW = "slow"  # answers after `delay_s` (a timeout when longer than the check's)
    FLAPPING = "flapping"  # `flap_period` requests up, then as many with `status`
    REDIRECT_LOOP = "redirect_loop"
    REDIRECT_OTHER_HOST = "redirect_other_host"  # to http(s)://localhost:<port>/landed
    KEYWORD_MISSING = "keyword_missing"
    RESET = "reset"  # accepts, then resets the connection


@dataclass(frozen=True, slots=True)
class SiteScript:
    behaviour: Behaviour = Behaviour.UP
    status: int = 503
    delay_s: float = 30.0
    flap_period: int = 1
    only_role: Role | None = None  # None: everyone; else other roles see the site up

    @classmethod
    def from_json(cls, data: dict[str, Any], base: SiteScript | None = None) -> SiteScript:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        values: dict[str, Any] = dict(data)
        if "behaviour" in values:
            values["behaviour"] = Behaviour(values["behaviour"])
        if values.get("only_role") is not None:
            values["only_role"] = Role(values["only_role"])
        return replace(base or cls(), **values)


@dataclass(slots=True)
class FleetSite:
    name: str
    port: int
    https: bool
    script: SiteScript
    tls_days: float | None = None
    hits: dict[str, int] = field(default_factory=dict)  # requests per role
    _site: web.SockSite | None = None
    _ssl: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}/"

    def describe(self) -> dict[str, Any]:
        script = asdict(self.script)
        return {
            "name": self.name,
            "url": self.url,
            "tls_days": self.tls_days,
            "hits": dict(self.hits),
            **{k: (v.value if isinstance(v, enum.Enum) else v) for k, v in script.items()},
        }


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # come back on the same port
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Fleet:
    """Start with `async with Fleet() as fleet:`; add sites with `await fleet.add(...)`."""

    def __init__(self) -> None:
        self.ca = trustme.CA(organization_name="sitewatch fleet CA")
        self.sites: dict[str, FleetSite] = {}
        self._by_port: dict[int, FleetSite] = {}
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._serve)
        # shutdown_timeout: do not wait for `slow` handlers that sleep on purpose
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        admin = web.Application()
        admin.router.add_get("/sites", self._admin_list)
        admin.router.add_put("/sites/{name}", self._admin_set)
        admin.router.add_post("/sites/{name}", self._admin_set)
        self._admin_runner = web.AppRunner(admin, handle_signals=False, access_log=None)
        self.admin_port = 0

    async def start(self, admin_port: int = 0) -> Fleet:
        await self._runner.setup()
        await self._admin_runner.setup()
        sock = _listen(admin_port)
        self.admin_port = sock.getsockname()[1]
        await web.SockSite(self._admin_runner, sock).start()
        return self

    async def close(self) -> None:
        await self._runner.cleanup()
        await self._admin_runner.cleanup()

    async def __aenter__(self) -> Fleet:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def write_ca(self, path: Path) -> Path:
        """The CA certificate (PEM) probes must trust: `--extra-ca` / SITEWATCH_PROBE_EXTRA_CA."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def _tls_context(self, days: float) -> ssl.SSLContext:
        now = datetime.now(UTC)
        not_after = now + timedelta(days=days)
        leaf = self.ca.issue_cert(
            "127.0.0.1",
            "localhost",
            not_before=min(now, not_after) - timedelta(days=90),
            not_after=not_after,
        )
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(ctx)
        return ctx

    async def add(
        self, name: str, script: SiteScript | None = None, *, tls_days: float | None = None
    ) -> FleetSite:
        """A new site; `tls_days` makes it HTTPS with a certificate expiring in that many
        days (negative: already expired)."""
        if name in self.sites:
            raise ValueError(f"site {name!r} exists")
        sock = _listen(0)
        site = FleetSite(
            name=name,
            port=sock.getsockname()[1],
            https=tls_days is not None,
            script=script or SiteScript(),
            tls_days=tls_days,
            _ssl=None if tls_days is None else self._tls_context(tls_days),
        )
        self.sites[name] = site
        self._by_port[site.port] = site
        if self._refuses(site.script):
            sock.close()
        else:
            await self._open(site, sock)
        return site

    async def set(self, name: str, script: SiteScript | None = None, **changes: Any) -> FleetSite:
        """Change a site's behaviour now (a full script, or some fields of it)."""
        site = self.sites[name]
        new = script or replace(site.script, **changes)
        was_refusing, site.script = self._refuses(site.script), new
        if self._refuses(new) and not was_refusing:
            await self._shut(site)
        elif was_refusing and not self._refuses(new):
            await self._open(site, _listen(site.port))
        return site

    @staticmethod
    def _refuses(script: SiteScript) -> bool:
        # `down` for one role only cannot refuse connections: it resets them instead
        return script.behaviour is Behaviour.DOWN and script.only_role is None

    async def _open(self, site: FleetSite, sock: socket.socket) -> None:
        site._site = web.SockSite(self._runner, sock, ssl_context=site._ssl)
        await site._site.start()

    async def _shut(self, site: FleetSite) -> None:
        if site._site is not None:
            await site._site.stop()
            site._site = None

    # -- serving ---------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        site = self._by_port.get(sockname[1]) if sockname else None
        if site is None:
            raise web.HTTPNotFound()
        role = request.headers.get(ROLE_HEADER, Role.PRIMARY.value)
        site.hits[role] = site.hits.get(role, 0) + 1
        script = site.script
        behaviour = script.behaviour
        if script.only_role is not None and role != script.only_role.value:
            behaviour = Behaviour.UP
        scheme = "https" if site.https else "http"
        match behaviour:
            case Behaviour.UP:
                return self._page(site)
            case Behaviour.ERROR_5XX:
                return web.Response(status=script.status, text="scripted failure")
            case Behaviour.SLOW:
                await asyncio.sleep(script.delay_s)
                return self._page(site)
            case Behaviour.FLAPPING:
                n = site.hits[role] - 1
                if (n // max(1, script.flap_period)) % 2 == 0:
                    return self._page(site)
                return web.Response(status=script.status, text="flapping: down phase")
            case Behaviour.REDIRECT_LOOP:
                nxt = "/loop/b" if request.path == "/loop/a" else "/loop/a"
                raise web.HTTPFound(nxt)
            case Behaviour.REDIRECT_OTHER_HOST:
                if request.path == "/landed":
                    return self._page(site)
                raise web.HTTPFound(f"{scheme}://localhost:{site.port}/landed")
            case Behaviour.KEYWORD_MISSING:
                return web.Response(text="<html>nothing to see</html>", content_type="text/html")
            case Behaviour.RESET | Behaviour.DOWN:
                self._reset(request)
                return web.Response(status=500)  # never sent: the connection is gone
        raise AssertionError(behaviour)  # pragma: no cover

    @staticmethod
    def _page(site: FleetSite) -> web.Response:
        return web.Response(
            text=f"<html><body>{KEYWORD} {site.name}</body></html>", content_type="text/html"
        )

    @staticmethod
    def _reset(request: web.Request) -> None:
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: close sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    # -- admin -----------------------------------------------------------------------

    async def _admin_list(self, request: web.Request) -> web.Response:
        return web.json_response([s.describe() for s in self.sites.values()])

    async def _admin_set(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.sites:
            raise web.HTTPNotFound(text=f"no site {name!r}")
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            script = SiteScript.from_json(data, self.sites[name].script)
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        site = await self.set(name, script)
        return web.json_response(site.describe())


#: the demo set: one site per behaviour, plus certificates at each TLS threshold
DEMO_SITES: list[tuple[str, SiteScript, float | None]] = [
    ("up", SiteScript(), None),
    ("down", SiteScript(Behaviour.DOWN), None),
    ("error-5xx", SiteScript(Behaviour.ERROR_5XX), None),
    ("slow", SiteScript(Behaviour.SLOW, delay_s=30), None),
    ("flapping", SiteScript(Behaviour.FLAPPING, flap_period=3), None),
    ("redirect-loop", SiteScript(Behaviour.REDIRECT_LOOP), None),
    ("redirect-other-host", SiteScript(Behaviour.REDIRECT_OTHER_HOST), None),
    ("keyword-missing", SiteScript(Behaviour.KEYWORD_MISSING), None),
    ("reset", SiteScript(Behaviour.RESET), None),
    ("false-alarm", SiteScript(Behaviour.ERROR_5XX, only_role=Role.PRIMARY), None),
    ("tls-ok", SiteScript(), 90),
    ("tls-warning", SiteScript(), 20),
    ("tls-degraded", SiteScript(), 5),
    ("tls-expired", SiteScript(), -1),
]


async def start_demo_fleet(extra_up: int = 0, admin_port: int = 0) -> Fleet:
    fleet = await Fleet().start(admin_port)
    for name, script, tls_days in DEMO_SITES:
        await fleet.add(name, script, tls_days=tls_days)
    for i in range(extra_up):
        await fleet.add(f"up-{i}")
    return fleet
