"""`sitewatch dev` serves the API on its SQLite database and prints its URL and a read
token: the demo's sites and the down site's incident are there to read."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.devrun import running_dev

pytestmark = pytest.mark.integration


async def test_dev_prints_api_url_and_read_token_that_work_on_sqlite(tmp_path: Path) -> None:
    async with running_dev(tmp_path, 75) as dev:
        url = await dev.line(r"^api +(http://\S+/api/v1) ")
        token = await dev.line(r"^token +(sw_\S+) +\(scope read\)$")
        base, headers = url.group(1), {"Authorization": f"Bearer {token.group(1)}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            deadline = time.monotonic() + 60
            while True:  # the sink materializes the demo's sites, the legacy site goes down
                try:
                    async with http.get(f"{base}/sites/6") as r:
                        site = await r.json() if r.status == 200 else {}
                except aiohttp.ClientError:
                    site = {}
                if site.get("current_state") == "down":
                    break
                assert time.monotonic() < deadline, dev.text()
                await asyncio.sleep(1)
            async with http.get(f"{base}/sites?limit=200") as r:
                assert r.status == 200
                assert len((await r.json())["data"]) == 9
            async with http.get(f"{base}/sites/6/uptime") as r:
                report = await r.json()
                assert r.status == 200, report
                assert report["policy"] == "sitewatch-1"
                assert len(report["incidents"]) >= 1 and report["down_s"] > 0
            async with http.get(f"{base}/events?state=open&site_id=6") as r:
                assert r.status == 200 and (await r.json())["data"]
            async with http.put(f"{base}/sites/6", json={"site_id": 6, "url": "http://x"}) as r:
                assert r.status == 403  # a read token
