"""A webhook endpoint for tests: verifies signatures, can fail or stall on purpose."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

from sitewatch.devbroker import free_port
from sitewatch.notify import signing


@dataclass
class Receiver:
    """A webhook endpoint: verifies signatures, can fail or stall on purpose."""

    secret: str
    fail_first: int = 0  # per delivery id
    always_fail: bool = False
    delay_s: float = 0.0
    port: int = field(default_factory=free_port)
    got: list[dict[str, object]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    bad_signatures: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get(signing.SIGNATURE_HEADER, "")
        if not signing.verify(self.secret, body, header):
            self.bad_signatures += 1
            return web.Response(status=401)
        did = request.headers[signing.DELIVERY_HEADER]
        n = self.attempts[did] = self.attempts.get(did, 0) + 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.always_fail or n <= self.fail_first:
            return web.Response(status=503)
        payload = json.loads(body)
        assert payload["delivery_id"] == did
        assert request.headers[signing.EVENT_HEADER] == payload["type"]
        self.got.append(payload)
        return web.Response(status=204)

    def delivered_ids(self) -> list[str]:
        return [str(p["delivery_id"]) for p in self.got]


async def serve(*receivers: Receiver) -> list[web.AppRunner]:
    runners = []
    for rcv in receivers:
        app = web.Application()
        app.router.add_post("/hook", rcv.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", rcv.port).start()
        runners.append(runner)
    return runners
