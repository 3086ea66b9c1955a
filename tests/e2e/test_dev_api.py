"""`sitewatch dev` serves the API on its SQLite database and prints its URL and a read
token: the demo's sites and the down site's incident are there to read."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.integration

SITEWATCH = str(Path(sys.executable).with_name("sitewatch"))


async def test_dev_prints_api_url_and_read_token_that_work_on_sqlite(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SITEWATCH_STATE_DIR": str(tmp_path / "state"),
        "SITEWATCH_PARTITIONS": "4",
    }
    env.pop("SITEWATCH_API_LISTEN", None)
    out_path = tmp_path / "dev.out"
    with out_path.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            *(SITEWATCH, "dev", "--no-ui", "--duration", "75", "--interval", "5"),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            text = out_path.read_text()
            url = re.search(r"^api +(http://\S+/api/v1) ", text, re.M)
            token = re.search(r"^token +(sw_\S+) +\(scope read\)$", text, re.M)
            if url and token:
                break
            assert proc.returncode is None and time.monotonic() < deadline, text
            await asyncio.sleep(0.5)
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
                assert time.monotonic() < deadline, out_path.read_text()
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
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, 2)
        await asyncio.wait_for(proc.wait(), 60)
    assert re.search(r"^stopped +api pid=\d+ exited 0$", out_path.read_text(), re.M)
