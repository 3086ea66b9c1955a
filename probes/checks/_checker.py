"""`Checker`: runs a spec's checks (http, tcp, dns, tls_expiry) and counts them."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any

from sitewatch import metrics
from sitewatch.streams.enums import CheckType, ErrorKind

from ..safety import InvalidTargetError, Target
from ._dns import check_dns, system_nameservers
from ._http import HttpCheck
from ._spec import CheckerConfig, CheckSpec, Observation, validate
from ._tcp import check_tcp
from ._tls import check_tls_expiry


async def _one(check: Awaitable[Observation]) -> list[Observation]:
    return [await check]


class Checker:
    """Runs checks; one per process, `start()`ed inside the event loop."""

    def __init__(self, config: CheckerConfig) -> None:
        self.config = config
        context = ssl.create_default_context()
        if config.extra_ca_file:
            context.load_verify_locations(cafile=config.extra_ca_file)
        self._nameservers = list(config.nameservers) or system_nameservers()
        self._http = HttpCheck(context, config.role, allow_private=config.allow_private)

    async def start(self) -> None:
        """Nothing to open: every check makes its own connection (kept for symmetry)."""

    async def close(self) -> None:
        """Nothing to close: no connection outlives its check."""

    async def __aenter__(self) -> Checker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run(self, spec: CheckSpec, checks: Iterable[CheckType]) -> list[Observation]:
        """Run `checks` for `spec`; one observation per check (tls_expiry: https only)."""
        observations = await self._run(spec, checks)
        metrics.observe_checks(observations)
        return observations

    async def _run(self, spec: CheckSpec, checks: Iterable[CheckType]) -> list[Observation]:
        wanted = list(dict.fromkeys(checks))
        try:
            target = validate(spec)
        except InvalidTargetError as exc:
            return [
                Observation(c, ok=False, error=ErrorKind.INVALID_TARGET, detail=str(exc))
                for c in wanted
            ]
        private = self.config.allow_private
        jobs: list[Coroutine[Any, Any, list[Observation]]] = []
        if CheckType.HTTP in wanted or (CheckType.TLS_EXPIRY in wanted and target.is_https):
            jobs.append(self._http_and_tls(spec, target, wanted))
        if CheckType.TCP in wanted:
            jobs.append(_one(check_tcp(target, spec.timeout_s, allow_private=private)))
        if CheckType.DNS in wanted:
            dns = check_dns(target, spec.timeout_s, self._nameservers, allow_private=private)
            jobs.append(_one(dns))
        if len(jobs) == 1:
            return await jobs[0]  # the common case: no extra task per check
        out: list[Observation] = []
        for part in await asyncio.gather(*jobs):
            out.extend(part)
        return out

    async def _http_and_tls(
        self, spec: CheckSpec, target: Target, wanted: list[CheckType]
    ) -> list[Observation]:
        obs = await self._http.run(spec, target)
        out = [obs] if CheckType.HTTP in wanted else []
        if CheckType.TLS_EXPIRY in wanted and target.is_https:
            tls = await check_tls_expiry(
                obs, target, spec.timeout_s, allow_private=self.config.allow_private
            )
            if tls is not None:
                out.append(tls)
        return out
