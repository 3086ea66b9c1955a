"""A local webhook endpoint for the notifier, checking signatures as receivers must."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from sitewatch.devbroker import free_port
from sitewatch.notify.signing import verify

#: (type, site_id, signature valid) of each webhook received
OnWebhook = Callable[[str, int, bool], None]


async def start_receiver(secret: str, on_webhook: OnWebhook) -> tuple[web.AppRunner, str]:
    """Serves POST /hook on a free loopback port; answers the runner (its `cleanup()`
    stops it) and the URL to subscribe. A bad signature is answered 401, still shown."""

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        valid = verify(secret, body, request.headers.get("X-Sitewatch-Signature", ""))
        try:
            data = json.loads(body)
            on_webhook(str(data.get("type", "?")), int(data.get("site_id", 0)), valid)
        except (ValueError, TypeError):
            return web.Response(status=400)
        return web.Response(status=204 if valid else 401)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"
